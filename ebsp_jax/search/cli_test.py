"""experiments/search.py through subprocesses, on a LeNet-5 float checkpoint the test writes."""

import itertools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebsp_jax import data as data_lib
from ebsp_jax import hw
from ebsp_jax import models
from ebsp_jax.numerics import layer_patterns
from ebsp_jax.search import formats
from ebsp_jax.train import checkpoint as ckpt_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "experiments", "search.py")
FAST = ["--sensitivity_examples=64", "--sensitivity_batch_size=32", "--mapper_search=fast"]


def _run(*args, timeout=600):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                        timeout=timeout, env=env, cwd=ROOT)


def _save_float_model(workdir, params):
  with ckpt_lib.Checkpointer(str(workdir / "float_model"), max_to_keep=1) as fm:
    fm.save(0, {"params": params, "model_state": {}},
            {"model": "lenet5", "dataset": "fashion_mnist", "float_top1": None, "step": 0})


@pytest.fixture(scope="module")
def float_run(tmp_path_factory):
  """A training workdir with a float_model/ checkpoint of a LeNet-5 trained for 150 steps on
  1024 Fashion-MNIST images (near enough to a minimum for positive Hessian traces)."""
  model = models.get_model("lenet5", num_classes=10)
  params = model.init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)), train=False)["params"]
  ds = data_lib.get_dataset("fashion_mnist", split="train", batch_size=64, shuffle=True, seed=1,
                            augment=False, num_examples=1024, drop_remainder=True, num_epochs=None)
  tx = optax.adam(2e-3)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, x, y):
    loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(
        model.apply({"params": p}, x), y).mean()
    g = jax.grad(loss)(params)
    upd, opt = tx.update(g, opt)
    return optax.apply_updates(params, upd), opt

  for _, b in zip(range(150), ds):
    params, opt = step(params, opt, b["image"], b["label"])
  workdir = tmp_path_factory.mktemp("run")
  _save_float_model(workdir, params)
  return str(workdir), params


@pytest.fixture(scope="module")
def untrained_run(tmp_path_factory):
  """A float_model/ checkpoint of a LeNet-5 at its random initialisation."""
  model = models.get_model("lenet5", num_classes=10)
  params = model.init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)), train=False)["params"]
  workdir = tmp_path_factory.mktemp("untrained")
  _save_float_model(workdir, params)
  return str(workdir)


def _brute_force(out, cost_of, limit, minimize_sensitivity=True):
  """The optimum over every choice: ``cost_of({layer: format name})`` and the output's own
  sensitivity matrix."""
  layers = list(out["layers"])
  cands = out["candidates"]
  best = None
  options = [[out["fixed"][l]] if l in out["fixed"] else cands for l in layers]
  for choice in itertools.product(*options):
    c = cost_of(dict(zip(layers, choice)))
    s = 0.0
    for l, f in zip(layers, choice):
      s += out["sensitivity"]["matrix"][l][f]
    key = (s, c) if minimize_sensitivity else (c, s)
    if (c if minimize_sensitivity else s) <= limit and (best is None or key < best):
      best = key
  return best


def _energy_on_its_design(choice):
  """A choice's energy on the one EBSP design it needs (experiments/hardware.py's sum)."""
  from ebsp_jax import hw
  from ebsp_jax.hw import arch
  wl = hw.model_workload("lenet5", "fashion_mnist")
  fm = {l: formats.parse_format(f) for l, f in choice.items()}
  res = hw.evaluate_network(wl, {"ebsp": arch.build_ebsp_for(fm.values())}, search="fast",
                            layer_formats=fm).results["ebsp"]
  c = 0.0
  for lc in res.layers:
    c += lc.energy_pj
  return c


def test_search_under_an_energy_budget(float_run, tmp_path):
  workdir, params = float_run
  out_path = tmp_path / "sub" / "s.json"
  r = _run("--model=lenet5", "--dataset=fashion_mnist", f"--pretrained={workdir}",
           "--budget=energy:0.8", "--reference_format=6b(L3)",
           "--candidates=4b(L2),6b(L3),8b(L7)", f"--output={out_path}", "--probes=4",
           f"--cost_cache={tmp_path / 'costs.json'}", *FAST)
  assert r.returncode == 0, r.stderr
  out = json.loads(out_path.read_text())
  kernels = sorted(layer_patterns(params, lambda p, l: None))
  assert sorted(out["layers"]) == kernels
  # The file drives a per-layer rule that gives every kernel its chosen format.
  chosen = formats.layer_formats_from_json(out)
  assert layer_patterns(params, formats.layer_formats_rule(chosen)) == chosen
  ref = out["reference"]
  assert ref["format"] == "6b(L3)" and out["budget"]["metric"] == "energy"
  assert out["budget"]["limit"] == pytest.approx(0.8 * ref["energy_pj"], rel=1e-15)
  assert out["cost"]["energy_pj"] <= out["budget"]["limit"]
  for key in ("energy_pj", "latency_s", "weight_bits"):
    assert out["cost"][key] == pytest.approx(
        sum(out["costs"][l][f][key] for l, f in out["layers"].items()), rel=1e-12)
    assert ref[key] == out["single_formats"]["6b(L3)"][key]
  # The design is the one the chosen formats need; the reference's is 6b(L3)'s own.
  d = out["design"]
  assert (d["bits"], d["length"], d["max_shift"]) == hw.pe.ebsp_support(
      [formats.parse_format(f) for f in out["layers"].values()])
  assert out["cost"]["weight_bits"] == sum(
      np.prod(params[l]["kernel"].shape) * formats.parse_format(f).bits
      for l, f in out["layers"].items())
  sens = out["sensitivity"]
  assert sens["method"] == "hessian" and sens["num_probes"] == 4 and sens["num_examples"] == 64
  assert sens["total"] == pytest.approx(
      sum(sens["matrix"][l][f] for l, f in out["layers"].items()), rel=1e-12)
  assert (sens["total"], out["cost"]["energy_pj"]) == pytest.approx(
      _brute_force(out, _energy_on_its_design, out["budget"]["limit"]), rel=1e-12)
  assert out["hardware"]["max_length"] == max(
      formats.parse_format(f).length for f in out["layers"].values())
  fits = [f for f in ("4b(L2)", "6b(L3)", "8b(L7)")
          if hw.pe.ebsp_pe(d["bits"], d["length"], max_shift=d["max_shift"]).supports(
              *(lambda p: (p.bits, p.length))(formats.parse_format(f)))]
  assert all(sorted(v) == sorted(fits) for v in out["costs"].values())
  assert out["hardware"]["settings"]["mapper_search"] == "fast"
  assert (tmp_path / "costs.json").exists()
  assert "error" not in r.stderr and "search:" in r.stdout
  assert "EBSP design: <=" in r.stdout

  # experiments/hardware.py --layer_formats recomputes the searched cost (issue 16's 1 %; the
  # same model and settings give the same numbers) and says that the settings match.
  hw_out = tmp_path / "hw.json"
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  h = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "hardware.py"),
                      "--model=lenet5", "--dataset=fashion_mnist", "--sweep=false",
                      "--search=fast", f"--layer_formats={out_path}", "--accelerators=ebsp,wax",
                      f"--output={hw_out}"], capture_output=True, text=True, timeout=600,
                     env=env, cwd=ROOT)
  assert h.returncode == 0, h.stderr
  rep = json.loads(hw_out.read_text())
  check = rep["layer_formats_search"]
  assert check["settings_match"] and check["differences"] == []
  assert check["energy_pj_ratio"] == pytest.approx(1.0, abs=0.01)
  assert check["latency_s_ratio"] == pytest.approx(1.0, abs=0.01)
  assert rep["accelerators"]["ebsp"]["energy_pj"] == pytest.approx(out["cost"]["energy_pj"],
                                                                   rel=1e-9)
  assert rep["layer_formats"] == out["layers"]
  assert [row["ebsp"]["format"] for row in rep["layers"]] == list(out["layers"].values())
  assert rep["accelerators"]["ebsp"]["pes"] == out["design"]["pes"]
  assert "this report's EBSP energy is 1.000000 x the searched cost" in h.stdout
  # Another setting is reported as a difference (not silently compared).
  h = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "hardware.py"),
                      "--model=lenet5", "--dataset=fashion_mnist", "--sweep=false",
                      "--search=fast", "--area_mm2=0.5", f"--layer_formats={out_path}",
                      "--accelerators=ebsp", f"--output={hw_out}"], capture_output=True,
                     text=True, timeout=600, env=env, cwd=ROOT)
  assert h.returncode == 0, h.stderr
  assert "area_mm2: 0.32 vs 0.5" in json.loads(hw_out.read_text())["layer_formats_search"][
      "differences"]


@pytest.mark.slow   # 28 s (two searches)
def test_sensitivity_cache_is_reused(float_run, tmp_path):
  workdir, _ = float_run
  cache = tmp_path / "sens.json"
  args = ["--model=lenet5", "--dataset=fashion_mnist", f"--pretrained={workdir}",
          "--candidates=4b(L2),6b(L3)", "--probes=4", f"--sensitivity_cache={cache}", *FAST]
  r = _run(*args, "--budget=bits:0.9", f"--output={tmp_path / 'a.json'}")
  assert r.returncode == 0, r.stderr
  first = json.loads((tmp_path / "a.json").read_text())["sensitivity"]["per_layer"]
  stored = json.loads(cache.read_text())
  (entry,) = stored.values()
  assert sorted(entry["errors"]) == ["4b(L2)/True", "6b(L3)/True"]
  entry["traces"]["trace"] = [2 * t for t in entry["traces"]["trace"]]
  cache.write_text(json.dumps(stored))
  r = _run(*args, "--budget=bits:0.8", f"--output={tmp_path / 'b.json'}")
  assert r.returncode == 0, r.stderr
  second = json.loads((tmp_path / "b.json").read_text())["sensitivity"]["per_layer"]
  assert [second[l]["trace"] for l in second] == [2 * first[l]["trace"] for l in first]


def test_least_energy_under_a_sensitivity_bound_with_fisher(float_run, tmp_path):
  workdir, params = float_run
  out_path = tmp_path / "s.json"
  r = _run("--model=lenet5", "--dataset=fashion_mnist", f"--pretrained={workdir}/float_model",
           "--max_sensitivity=1.0", "--minimize=bits", "--sensitivity=fisher",
           "--candidates=4b(L2),6b(L3)", "--fixed=conv_init=8b(L7),head=8b(L7)",
           f"--output={out_path}", *FAST)
  assert r.returncode == 0, r.stderr
  out = json.loads(out_path.read_text())
  assert out["sensitivity"]["method"] == "fisher" and out["budget"]["minimized"] == "bits"
  assert out["fixed"] == {"conv_init": "8b(L7)", "head": "8b(L7)"}
  assert out["layers"]["conv_init"] == out["layers"]["head"] == "8b(L7)"
  assert set(out["layers"].values()) <= {"4b(L2)", "6b(L3)", "8b(L7)"}
  limit = out["sensitivity"]["reference_total"]
  assert out["sensitivity"]["total"] <= limit
  def bits(choice):
    c = 0.0
    for l, f in choice.items():
      c += float(np.prod(params[l]["kernel"].shape) * formats.parse_format(f).bits)
    return c

  assert (out["cost"]["weight_bits"], out["sensitivity"]["total"]) == pytest.approx(
      _brute_force(out, bits, limit, minimize_sensitivity=False), rel=1e-12)


@pytest.mark.parametrize("extra,needle", [
    (["--budget=area:0.5"], "--budget=area:0.5: expected METRIC:F with METRIC one of energy, "
                            "latency, bits"),
    (["--budget=energy:-1"], "F must be a finite number > 0"),
    (["--budget=energy:0.8", "--max_sensitivity=1"], "--budget and --max_sensitivity are "
                                                     "exclusive"),
    (["--max_sensitivity=1"], "--max_sensitivity needs --minimize"),
    ([], "give --budget=METRIC:F"),
    (["--budget=energy:0.8", "--candidates=4b(L2),7b(L9)"], "--candidates: format '7b(L9)'"),
    (["--budget=energy:0.8", "--reference_format=6bL3"], "--reference_format: format '6bL3' is "
                                                         "not of the form"),
    (["--budget=energy:0.8", "--acc_bits=8"], "acc_bits=8 is narrower"),
    (["--budget=energy:0.8", "--model=lenet7"], "unknown model 'lenet7'"),
    (["--budget=energy:0.8", "--dataset=cifar10"], "a lenet5 on fashion_mnist, but lenet5 "
                                                   "on cifar10 was asked for"),
    (["--budget=energy:0.8", "--sensitivity=fisher", "--probes=4"], "--probes only applies"),
    (["--budget=energy:0.8", "--output="], "--output is required"),
    (["--budget=energy:0.8", "--output=/"], "is a directory"),
    (["--budget=energy:0.000001"], "budget"),
    (["--budget=energy:0.8", "--fixed=conv_init"], "--fixed entries are LAYER=FORMAT"),
    (["--budget=energy:0.8", "--fixed=fc9=4b(L2)"], "--fixed: unknown layer(s) fc9; the lenet5 "
                                                    "layers are: conv_init, conv1, fc1"),
])
def test_bad_flags_are_one_line_errors(float_run, tmp_path, extra, needle):
  workdir, _ = float_run
  args = [f"--pretrained={workdir}", f"--output={tmp_path / 'o.json'}",
          "--candidates=4b(L2),6b(L3)", *FAST, *extra]
  r = _run(*args)
  assert r.returncode == 2, r.stderr
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
  assert not (tmp_path / "o.json").exists()


def test_missing_pretrained(tmp_path):
  r = _run("--budget=energy:0.8", f"--pretrained={tmp_path / 'nope'}",
           f"--output={tmp_path / 'o.json'}")
  assert r.returncode == 2
  assert r.stderr.strip() == (f"error: --pretrained={tmp_path / 'nope'}: no such directory "
                              "(expected a training run's --workdir or its float_model/)")


def test_negative_hessian_trace_is_refused(untrained_run, tmp_path):
  r = _run("--budget=energy:0.8", f"--pretrained={untrained_run}", "--probes=4",
           "--candidates=4b(L2),6b(L3)", f"--output={tmp_path / 'o.json'}", *FAST)
  assert r.returncode == 2
  line = r.stderr.strip()
  assert line.startswith("error: the Hessian trace estimate of layer ") and "\n" not in line
  assert "not positive" in line and "--sensitivity=fisher" in line
  assert not (tmp_path / "o.json").exists()
