"""Golden vectors: export, read back with an independent parser, re-run layers bit-exactly."""

import json
import os

import jax
import numpy as np
import pytest

from ebsp_jax import golden, quant
from ebsp_jax.quant import testing


def _parse_hex(path, width, signed):
  """Independent ``$readmemh`` reader (not ebsp_jax.golden.hexio): words -> int."""
  vals = []
  for raw in open(path, encoding="ascii").read().splitlines():
    text = raw.strip()
    if not text or text.startswith("//"):
      continue
    assert len(text) == (width + 3) // 4, f"{path}: word {text!r} has the wrong digit count"
    v = int(text, 16)
    assert v < 2 ** width
    vals.append(v - 2 ** width if signed and v >> (width - 1) else v)
  return np.array(vals, dtype=object)


def _read(d, meta, name):
  f = meta["files"][name]
  return _parse_hex(os.path.join(d, f["file"]), f["width"], f["signed"]).reshape(f["shape"])


def _conv_ref(x, w, strides, padding):
  """Python-int NHWC x HWIO convolution (groups 1, no dilation; explicit or VALID padding)."""
  if padding == "VALID":
    padding = [(0, 0), (0, 0)]
  x = np.pad(x, [(0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)])
  kh, kw, _, co = w.shape
  n, h, wd, _ = x.shape
  oh, ow = (h - kh) // strides[0] + 1, (wd - kw) // strides[1] + 1
  out = np.zeros((n, oh, ow, co), dtype=object)
  for i in range(kh):
    for j in range(kw):
      patch = x[:, i:i + strides[0] * oh:strides[0], j:j + strides[1] * ow:strides[1], :]
      out += np.tensordot(patch, w[i, j], axes=([3], [0]))
  return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  x = jax.random.normal(jax.random.key(0), (8, 12, 12, 1))
  _, v, rule, scales = testing.calibrated(testing.TinyCNN, x)
  imodel = quant.to_integer(testing.TinyCNN(), v, weight_rule=rule, weight_scales=scales)
  out = str(tmp_path_factory.mktemp("golden"))
  manifest = golden.export(imodel, x[:2], out)
  return out, manifest, imodel, x[:2]


def test_manifest_and_npz_roundtrip(exported):
  out, manifest, imodel, x = exported
  assert set(manifest["layers"]) == set(imodel.layers)
  with pytest.raises(ValueError, match="unknown layer 'nope'"):
    golden.export(imodel, x, out + "_other", layers=["nope"])
  with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
    assert json.load(f)["layers"].keys() == manifest["layers"].keys()
  for layer, meta in manifest["layers"].items():
    d = os.path.join(out, meta["dir"])
    arrays = golden.load(out, layer)
    for name in meta["files"]:
      np.testing.assert_array_equal(_read(d, meta, name).astype(np.int64), arrays[name])
      f = meta["files"][name]
      np.testing.assert_array_equal(golden.read_memh(os.path.join(d, f["file"]), f["width"],
                                                     signed=f["signed"]),
                                    arrays[name].reshape(-1))


def test_rerun_layers_bit_exactly_from_hex(exported):
  out, manifest, _, _ = exported
  for layer, meta in manifest["layers"].items():
    d = os.path.join(out, meta["dir"])
    code = meta["weight_code"]
    sign, shift, mant = (_read(d, meta, k) for k in ("w_sign", "w_shift", "w_mant"))
    packed = _read(d, meta, "w_code")
    assert np.all(packed == (sign << (code["shift_bits"] + code["mant_bits"]))
                  | (shift << code["mant_bits"]) | mant)
    w = np.where(sign == 1, -1, 1) * (mant << shift)
    assert np.all(w == _read(d, meta, "w_level"))
    a = _read(d, meta, "input")
    args = meta["lax_args"]
    if meta["op"] == "conv_general_dilated":
      acc = _conv_ref(a, w, args["window_strides"], args["padding"])
    else:
      acc = np.tensordot(a, w, axes=([a.ndim - 1], [0]))
    np.testing.assert_array_equal(acc.astype(np.int64), _read(d, meta, "acc").astype(np.int64),
                                  err_msg=layer)
    # LUT: LUT_a[j] = j * a.
    lut, acts = _read(d, meta, "lut"), _read(d, meta, "lut_act")
    assert lut.shape == (len(acts), 2 ** code["mant_bits"])
    assert np.all(lut == np.outer(acts, np.arange(2 ** code["mant_bits"])))
    # Requantization of the layer's input from the previous int32 tensor.
    if meta["input_kind"] != "requant":
      continue
    rq = meta["requant"]
    pre = _read(d, meta, "rq_pre")
    bias, mult, sh = (_read(d, meta, k) for k in ("rq_bias", "rq_multiplier", "rq_shift"))
    total = ((pre << rq["acc_shift"]) + bias) * mult
    rounding = np.where(sh > 0, 1 << np.maximum(sh - 1, 0), 0)
    want = np.clip((total + rounding) >> sh, rq["lo"], rq["hi"])
    np.testing.assert_array_equal(want.astype(np.int64), a.astype(np.int64), err_msg=layer)


def test_hexio_format_and_errors(tmp_path):
  p = str(tmp_path / "w.hex")
  golden.write_memh(p, np.array([[-3, 127], [-128, 0]]), 8, comments=["test"])
  assert open(p, encoding="ascii").read().splitlines() == ["// test", "fd", "7f", "80", "00"]
  assert golden.read_memh(p, 8).tolist() == [-3, 127, -128, 0]
  golden.write_memh(p, np.array([200, 5]), 8, signed=False)
  assert golden.read_memh(p, 8, signed=False).tolist() == [200, 5]
  with pytest.raises(ValueError, match="do not fit 8-bit signed"):
    golden.write_memh(p, np.array([128]), 8)
