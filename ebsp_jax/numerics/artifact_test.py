"""The quantized-model artifact: round trip, and one-line refusals of bad files."""

import json

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings
from safetensors.numpy import load, save

from ebsp_jax.numerics import BitPattern, artifact, uniform
from ebsp_jax.numerics.tree import layer_patterns


@st.composite
def layers(draw):
  out = {}
  for i in range(draw(st.integers(1, 3))):
    signed = draw(st.booleans())
    bits = draw(st.integers(2 if signed else 1, 16))
    fmt = BitPattern(bits, draw(st.integers(1, bits - 1 if signed else bits)), signed)
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=2, max_size=4)))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    codes = rng.choice(fmt.levels, size=shape)
    scale = (rng.uniform(0.01, 2.0, size=shape[-1]) if draw(st.booleans())
             else np.asarray(rng.uniform(0.01, 2.0)))
    act = draw(st.sampled_from([None, uniform(8, False), uniform(8, True), uniform(4, True)]))
    name = f"block{i}/conv" if i % 2 else f"dense{i}"
    out[name] = artifact.QuantizedLayer(name, codes, scale.astype(np.float32), fmt, act,
                                        None if act is None else float(rng.uniform(0.001, 1)))
  return out


def _model(layers_, **kw):
  variables = {"params/head/bias": np.arange(3, dtype=np.float32),
               "batch_stats/bn/mean": np.ones(4, np.float32),
               "quant_stats/dense0/act/count": np.asarray(7, np.int32)}
  args = dict(model="lenet5", dataset="fashion_mnist", num_classes=10, activation_bits=8,
              dual_lod="off", layers=layers_, variables=variables, source={"step": 16})
  return artifact.QuantizedModel(**{**args, **kw})


@settings(max_examples=25, deadline=None)
@given(layers())
def test_round_trip(tmp_path_factory, ls):
  path = tmp_path_factory.mktemp("a") / artifact.FILE_NAME
  qm = _model(ls)
  path.write_bytes(artifact.to_bytes(qm))
  got = artifact.read(str(path.parent))          # a workdir holding the file reads too
  assert (got.model, got.dataset, got.num_classes, got.activation_bits, got.dual_lod,
          got.source) == ("lenet5", "fashion_mnist", 10, 8, "off", {"step": 16})
  assert list(got.layers) == sorted(ls)
  for name, l in ls.items():
    g = got.layers[name]
    assert g.format == l.format and g.activation == l.activation
    assert g.activation_scale == l.activation_scale     # a float64 round trip through JSON
    assert g.codes.dtype == (np.int8 if l.format.max_level < 128 else
                             np.int16 if l.format.max_level < 2**15 else np.int32)
    np.testing.assert_array_equal(g.codes, l.codes)
    assert g.scale.dtype == np.float32 and g.scale.shape == l.scale.shape
    np.testing.assert_array_equal(g.scale, l.scale)
  for k, v in qm.variables.items():
    assert got.variables[k].shape == v.shape and got.variables[k].dtype == v.dtype
    np.testing.assert_array_equal(got.variables[k], v)


def test_variable_tree_rule_and_scales():
  fmt = BitPattern(5, 2)
  codes = np.array([[0, 3, -6], [12, -8, 1]], np.int64)
  scale = np.array([0.5, 0.25, 2.0], np.float32)
  qm = _model({"dense0": artifact.QuantizedLayer("dense0", codes, scale, fmt, uniform(8, False),
                                                 0.1)})
  tree = qm.variable_tree()
  kernel = tree["params"]["dense0"]["kernel"]
  assert kernel.dtype == np.float32
  np.testing.assert_array_equal(kernel, codes * scale)       # exact: small codes, float32
  assert tree["params"]["head"]["bias"].shape == (3,) and "batch_stats" in tree
  rule = qm.weight_rule()
  assert layer_patterns(tree["params"], rule) == {"dense0": fmt}
  assert rule("dense0/kernel_extra", kernel) is None and rule("xdense0/kernel", kernel) is None
  scales = qm.weight_scales(tree["params"])
  np.testing.assert_array_equal(scales["dense0"]["kernel"], scale)
  assert scales["head"]["bias"] is None


def _write_raw(path, tensors, **meta_changes):
  meta = {"format": artifact.FORMAT, "version": str(artifact.VERSION),
          "header": json.dumps({"model": "m", "dataset": "d", "num_classes": 2,
                                "activation_bits": 8, "dual_lod": "off", "source": {},
                                "layers": {"a": {"format": {"bits": 4, "length": 2,
                                                            "signed": True},
                                                 "activation": None}}}),
          "checksum": artifact._checksum(tensors)}  # pylint: disable=protected-access
  meta.update(meta_changes)
  path.write_bytes(save(tensors, metadata=meta))
  return str(path)


GOOD = {"codes/a": np.array([[0, 1], [-6, 3]], np.int8), "scales/a": np.ones(2, np.float32)}


@pytest.mark.parametrize("tensors, meta, match", [
    (GOOD, {}, None),
    (GOOD, {"version": "2"}, "format version '2', this reader reads version 1; rewrite it with "
                             "python -m ebsp_jax.train.export_run"),
    (GOOD, {"format": "something.else"}, "not an ebsp-jax quantized model"),
    (GOOD, {"checksum": "0" * 64}, "checksum mismatch: the file is corrupt"),
    (GOOD, {"header": "{not json"}, "malformed header"),
    ({"codes/a": GOOD["codes/a"]}, {}, "layer 'a' has no tensor 'scales/a'"),
    ({**GOOD, "codes/a": np.array([[0, 1], [5, 3]], np.int8)}, {},
     "layer 'a': 1 codes are off the 4b\\(L2\\) grid"),
    ({**GOOD, "scales/a": np.ones(3, np.float32)}, {}, "scale of shape \\(3,\\), expected"),
    ({**GOOD, "codes/b": GOOD["codes/a"]}, {}, "tensor 'codes/b' belongs to no layer"),
])
def test_bad_files_are_refused_in_one_line(tmp_path, tensors, meta, match):
  path = _write_raw(tmp_path / "q.safetensors", tensors, **meta)
  if match is None:
    assert list(artifact.read(path).layers) == ["a"]
    return
  with pytest.raises(ValueError, match=match) as e:
    artifact.read(path)
  assert "\n" not in str(e.value) and str(e.value).startswith(f"quantized model {path}")


def test_missing_truncated_and_flipped_files(tmp_path):
  with pytest.raises(ValueError, match=r"quantized model .*quantized_model.safetensors does not "
                                       r"exist$"):
    artifact.read(str(tmp_path))
  good = _write_raw(tmp_path / "q.safetensors", GOOD)
  data = (tmp_path / "q.safetensors").read_bytes()
  (tmp_path / "cut.safetensors").write_bytes(data[:-3])
  with pytest.raises(ValueError, match="not a readable safetensors file"):
    artifact.read(str(tmp_path / "cut.safetensors"))
  flipped = bytearray(data)
  flipped[-1] ^= 0x04                          # one bit of the last tensor's bytes
  (tmp_path / "flip.safetensors").write_bytes(bytes(flipped))
  assert any(not np.array_equal(v, load(data)[k]) for k, v in load(bytes(flipped)).items())
  with pytest.raises(ValueError, match="checksum mismatch"):
    artifact.read(str(tmp_path / "flip.safetensors"))
  assert artifact.read(good).layers["a"].format == BitPattern(4, 2)


def test_writer_refuses_inconsistent_models():
  fmt = BitPattern(4, 2)
  off = artifact.QuantizedLayer("a", np.array([[5]]), np.ones(1, np.float32), fmt)
  with pytest.raises(ValueError, match="to_bytes: layer 'a': 1 codes are off the 4b\\(L2\\)"):
    artifact.to_bytes(_model({"a": off}))
  dup = artifact.QuantizedLayer("head", np.array([[1]]), np.ones(1, np.float32), fmt)
  qm = _model({"head": dup}, variables={"params/head/kernel": np.ones((1, 1), np.float32)})
  with pytest.raises(ValueError, match="both a quantized layer and a variable"):
    artifact.to_bytes(qm)
