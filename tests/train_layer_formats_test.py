"""--layer_formats: a searched per-layer configuration through ADMM training and integer mode.

The file is what ``experiments/search.py`` writes (its ``"layers"``); the tiny run (LeNet-5,
128 examples, 16 steps) trains each layer toward its own grid, ends with every kernel on it and
runs the integer datapath with each layer's own LUT, equal to fake-quant.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags

from ebsp_jax import quant
from ebsp_jax.numerics import BitPattern
from ebsp_jax.train import flags as train_flags
from ebsp_jax.train import testing
from ebsp_jax.train.config import TrainConfig
from ebsp_jax.train.trainer import Experiment, weight_rule

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Five different formats, lengths 1..5: every layer's LUT differs.
FORMATS = {"conv_init": "6b(L3)", "conv1": "5b(L2)", "fc1": "4b(L1)", "fc2": "6b(L5)",
           "head": "8b(L4)"}
TINY = {k: v for k, v in testing.TINY_FLAGS.items() if k not in ("pattern_bits",
                                                                 "pattern_length")}


def _write(path, layers, **extra):
  path.write_text(json.dumps({"layers": layers, "cost": {"energy_pj": 1.0}, **extra}))
  return str(path)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return testing.write_fake_fashion_mnist(str(tmp_path_factory.mktemp("fmnist")), 160, 100)


def _cfg(**kw):
  return TrainConfig(**{"dataset": "fashion_mnist", "model": "lenet5", "workdir": "/tmp/x", **kw})


def test_config_reads_the_file_and_fingerprints_its_content(tmp_path):
  a = _write(tmp_path / "a.json", FORMATS)
  b = tmp_path / "b.json"
  b.write_text(json.dumps(FORMATS))                     # a plain map: the same content
  cfg = _cfg(layer_formats=a)
  assert cfg.layer_format_map() == {k: BitPattern(*map(int, v[:-1].replace("b(L", " ").split()))
                                    for k, v in FORMATS.items()}
  assert cfg.fingerprint()["layer_formats"] == FORMATS
  assert _cfg(layer_formats=str(b)).fingerprint() == cfg.fingerprint()
  assert _cfg(layer_formats=_write(tmp_path / "c.json", {**FORMATS, "head": "8b(L7)"})
              ).fingerprint() != cfg.fingerprint()
  assert "layer_formats" not in _cfg().fingerprint()    # earlier runs' fingerprints unchanged
  # A reloaded run passes the recorded map back.
  again = _cfg(**{k: v for k, v in cfg.fingerprint().items() if k != "dataset"})
  assert again.fingerprint() == cfg.fingerprint() and hash(again)
  assert cfg.main_pattern() == BitPattern(6, 3) and cfg.dual_lod_lengths() == (1, 2, 3, 4, 5)
  assert cfg.weights_text().startswith("per-layer formats conv_init 6b(L3), conv1 5b(L2)")
  rule = weight_rule(cfg)
  k = np.zeros((5, 5, 1, 6))
  assert rule("conv_init/kernel", k) == BitPattern(6, 3)
  assert rule("fc1/kernel", np.zeros((4, 2))) == BitPattern(4, 1)
  assert rule("fc1/bias", np.zeros(2)) is None


@pytest.mark.parametrize("kw, match", [
    (dict(first_last="8"), "--first_last=8 and --layer_formats are exclusive"),
    (dict(layer_formats="/nonexistent/lf.json"), "--layer_formats=/nonexistent/lf.json does "
                                                 "not exist"),
])
def test_bad_configs_are_one_line(tmp_path, kw, match):
  kw.setdefault("layer_formats", _write(tmp_path / "a.json", FORMATS))
  with pytest.raises(ValueError, match=match) as e:
    _cfg(**kw)
  assert "\n" not in str(e.value)
  (tmp_path / "bad.json").write_text(json.dumps({"layers": {"fc1": "4b(L9)"}}))
  with pytest.raises(ValueError, match="layer 'fc1': format '4b\\(L9\\)'"):
    _cfg(layer_formats=str(tmp_path / "bad.json"))


def test_pattern_flags_alongside_are_refused(tmp_path):
  path = _write(tmp_path / "a.json", FORMATS)
  for extra in (["--pattern_bits=5"], ["--pattern_length=2"]):
    fv = flags.FlagValues()
    train_flags.define_flags(fv)
    fv(["prog", "--model=lenet5", "--workdir=/tmp/w", f"--layer_formats={path}", *extra])
    with pytest.raises(ValueError, match=f"{extra[0].split('=')[0]} and --layer_formats are "
                       "exclusive"):
      train_flags.config_from_flags("fashion_mnist", fv)
  fv = flags.FlagValues()
  train_flags.define_flags(fv)
  fv(["prog", "--model=lenet5", "--workdir=/tmp/w", f"--layer_formats={path}"])
  assert train_flags.config_from_flags("fashion_mnist", fv).layer_formats == path


def test_layers_must_be_the_models(tmp_path, data_dir):
  for layers, needle in (({**FORMATS, "fc9": "4b(L2)"}, "unknown layer(s) fc9"),
                         ({k: v for k, v in FORMATS.items() if k != "head"},
                          "no format for layer(s) head")):
    cfg = _cfg(**TINY, data_dir=data_dir, workdir=str(tmp_path / "w"),
               layer_formats=_write(tmp_path / "l.json", layers))
    with pytest.raises(ValueError, match=re.escape(needle)) as e:
      Experiment(cfg, stream=io.StringIO())
    assert "the model's layers are: conv1, conv_init, fc1, fc2, head" in str(e.value)
    assert not (tmp_path / "w").exists()


def test_searched_configuration_trains_and_runs_in_integer_mode(tmp_path, data_dir):
  path = _write(tmp_path / "search.json", FORMATS)
  cfg = _cfg(**TINY, data_dir=data_dir, workdir=str(tmp_path / "run"), layer_formats=path)
  stream = io.StringIO()
  exp = Experiment(cfg, stream=stream)
  res = exp.run()
  with open(os.path.join(cfg.workdir, "results.json")) as f:
    assert json.load(f)["layer_formats"] == FORMATS
  assert res["layer_formats"] == FORMATS and res["pattern"] is None
  assert "per-layer formats conv_init 6b(L3)" in stream.getvalue()
  # ADMM put every kernel exactly on its own grid.
  layers = res["layers"]
  assert {k.split("/")[0]: v["pattern"] for k, v in layers.items()} == FORMATS
  assert all(v["on_grid"] for v in layers.values())
  # Integer mode computes the fake-quant network: the same top-1 on the 100 test images.
  assert res["integer_top1"] == res["quant_top1"] and res["integer_overflows"] == 0
  # ... with each layer's own LUT: its weight pattern, 2^(L-1) - 1 fill adds per LUT fill, and
  # no shift beyond its own pattern's.
  from ebsp_jax.train import reload
  exp2, state = reload.load_run(cfg.workdir, data_dir=data_dir)
  assert exp2.cfg.layer_format_map() == cfg.layer_format_map()
  int_model = quant.to_integer("lenet5", {"params": state.params, **state.model_state},
                               weight_rule=exp2.rule, weight_scales=state.weight_scales,
                               activation_bits=8)
  x = jnp.asarray(next(iter(exp2.data.eval_batches()))["image"][:4])
  events = int_model.events(x)
  for layer, name in FORMATS.items():
    pat = int_model.layers[layer].weight_pattern
    assert str(pat) == name
    ev = events[layer]
    assert ev["lut_fills"] > 0
    assert ev["lut_fill_adds"] == ev["lut_fills"] * ((1 << (pat.length - 1)) - 1)
    assert len(ev["shift_hist"]) <= pat.max_shift + 1


def test_main_refuses_ptq_with_layer_formats(tmp_path, data_dir):
  path = _write(tmp_path / "a.json", FORMATS)
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "fashion_mnist.py"),
                        f"--workdir={tmp_path / 'w'}", f"--data_dir={data_dir}",
                        f"--layer_formats={path}", "--ptq", f"--pretrained={tmp_path}"],
                       capture_output=True, text=True, timeout=300, env=env)
  assert out.returncode == 2, out.stderr
  err = [l for l in out.stderr.splitlines() if l.strip()]
  assert len(err) == 1 and err[0] == ("error: --ptq with --layer_formats is not supported: "
                                      "post-training quantization takes one --pattern_bits/"
                                      "--pattern_length (and --first_last)")
  assert not (tmp_path / "w").exists()
