"""Golden vectors: export, read back with an independent parser, re-run layers bit-exactly.

The checks below use only the files and manifests (and small Python-int routines written here
from ``FORMAT.md``), never the library's datapath code: an RTL-style independent checker.
"""

import json
import os

import jax
import numpy as np
import pytest

from ebsp_jax import golden, quant
from ebsp_jax.quant import testing

# (name, to_integer datapath options): one export each, from the same calibrated TinyCNN.
CONFIGS = {
    "exact_wrap32": {},
    "exact_sat12": {"overflow": "saturate", "acc_bits": 12},
    "exact_clip12": {"overflow": "clip", "acc_bits": 12},
    "dual_truncate_wrap32": {"mode": "dual_lod", "rounding": "truncate"},
    "dual_round_sat14": {"mode": "dual_lod", "rounding": "round", "overflow": "saturate",
                         "acc_bits": 14},
}


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


def _cut(a, length, rounding):
  """Dual-LOD cut of one Python int, from FORMAT.md: ``(sign, shift, mant)``."""
  sign, mag = int(a < 0), abs(int(a))
  shift = max(0, mag.bit_length() - length)
  if rounding == "truncate" or shift == 0:
    mant = mag >> shift
  else:
    mant = (mag + (1 << (shift - 1))) >> shift
    if mant == 1 << length:
      mant, shift = 1 << (length - 1), shift + 1
  return sign, shift, mant


def _im2col(x, kshape, strides, pads):
  """Python-object NHWC patches ``(N*OH*OW, KH*KW*C)`` (HWI order), zero padding."""
  x = np.pad(x, [(0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)])
  kh, kw = kshape
  n, h, w, c = x.shape
  oh, ow = (h - kh) // strides[0] + 1, (w - kw) // strides[1] + 1
  cols = np.empty((n, oh, ow, kh, kw, c), dtype=object)
  for i in range(kh):
    for j in range(kw):
      cols[:, :, :, i, j, :] = x[:, i:i + strides[0] * oh:strides[0],
                                 j:j + strides[1] * ow:strides[1], :]
  return cols.reshape(n * oh * ow, kh * kw * c), (n, oh, ow)


def _operands(meta, x, w_fields):
  """``(A (P, K), W fields (K, O) each, out shape)`` of a conv (NHWC/HWIO) or dense layer."""
  if meta["op"] == "conv_general_dilated":
    args, conv = meta["lax_args"], meta["conv"]
    dn = args["dimension_numbers"]
    assert (dn["lhs_spec"], dn["rhs_spec"], dn["out_spec"]) == ([0, 3, 1, 2], [3, 2, 0, 1],
                                                                [0, 3, 1, 2])
    assert (conv["input_layout"], conv["kernel_layout"]) == ("NHWC", "HWIO")
    assert args["feature_group_count"] == 1 and args["rhs_dilation"] == [1, 1]
    if args["padding"] != "VALID":
      assert conv["padding_pairs"] == args["padding"]
    kh, kw, _, co = w_fields[0].shape
    a, (n, oh, ow) = _im2col(x, (kh, kw), args["window_strides"], conv["padding_pairs"])
    return a, [f.reshape(-1, co) for f in w_fields], (n, oh, ow, co)
  assert meta["lax_args"]["dimension_numbers"] == [[[1], [0]], [[], []]]
  return x, w_fields, (x.shape[0], w_fields[0].shape[1])


def _register(prods, bits):
  """FORMAT.md §7 saturate: per output (column pair), clip after every add in K order.

  ``prods``: Python-int products ``(rows, K, cols)`` with K in the datapath's order.
  Returns ``(acc (rows, cols), clamp events)``.
  """
  lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
  rows, k, cols = prods.shape
  acc = np.empty((rows, cols), dtype=object)
  events = 0
  for i in range(rows):
    for j in range(cols):
      r = 0
      for t in range(k):
        r += prods[i, t, j]
        if r < lo or r > hi:
          r, events = min(max(r, lo), hi), events + 1
      acc[i, j] = r
  return acc, events


def _accumulate(s, meta):
  """The exported accumulator from the exact sums ``s`` (wrap, clip: manifest's
  acc_semantics)."""
  bits = meta["acc_bits"]
  lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
  if meta["overflow"] == "clip":
    assert meta["acc_semantics"].startswith("acc = clip(S, ")
    assert "NOT per-add saturation" in meta["acc_semantics"]
    return np.vectorize(lambda v: min(max(v, lo), hi), otypes=[object])(s)
  assert meta["acc_semantics"].startswith("acc = S mod 2**acc_bits")
  return np.vectorize(lambda v: ((v + (1 << (bits - 1))) % (1 << bits)) - (1 << (bits - 1)),
                      otypes=[object])(s)


def _epilogue(ops, q):
  """Applies the exported epilogue ops (the subset TinyCNN uses) to the Python-int ``q``."""
  for op in ops:
    assert op["formula"], op
    kind = op["op"]
    if kind == "bias":
      q = q * (1 << op["acc_shift"]) + np.array(op["bias"], dtype=object)
    elif kind in ("maximum", "minimum"):
      fn = np.maximum if kind == "maximum" else np.minimum
      q = fn(q, np.array(op["const"], dtype=object))
    elif kind == "rounding_shift_right":
      k = np.array(op["shift"], dtype=object)
      q = np.where(k == 0, q, (q + (1 << np.maximum(k - 1, 0))) >> k)
    elif kind == "reduce_window_max":
      wd, ws = op["window_dimensions"], op["window_strides"]
      assert all(p == [0, 0] for p in op["padding"]) and wd[0] == ws[0] == wd[3] == ws[3] == 1
      n, h, w, c = q.shape
      oh, ow = (h - wd[1]) // ws[1] + 1, (w - wd[2]) // ws[2] + 1
      out = np.empty((n, oh, ow, c), dtype=object)
      for y in range(oh):
        for x in range(ow):
          out[:, y, x, :] = q[:, y * ws[1]:y * ws[1] + wd[1],
                              x * ws[2]:x * ws[2] + wd[2], :].max(axis=(1, 2))
      q = out
    elif kind == "reshape":
      q = q.reshape(op["new_sizes"])
    else:
      raise NotImplementedError(kind)
  return q


@pytest.fixture(scope="module")
def calibrated():
  x = jax.random.normal(jax.random.key(0), (8, 12, 12, 1))
  _, v, rule, scales = testing.calibrated(testing.TinyCNN, x)
  return x, v, rule, scales


@pytest.fixture(scope="module", params=list(CONFIGS))
def exported(request, calibrated, tmp_path_factory):
  x, v, rule, scales = calibrated
  imodel = quant.to_integer(testing.TinyCNN(), v, weight_rule=rule, weight_scales=scales,
                            **CONFIGS[request.param])
  out = str(tmp_path_factory.mktemp(f"golden_{request.param}"))
  manifest = golden.export(imodel, x[:2], out)
  return out, manifest, imodel, x[:2]


def test_manifest_and_npz_roundtrip(exported):
  out, manifest, imodel, x = exported
  assert set(manifest["layers"]) == set(imodel.layers)
  with pytest.raises(ValueError, match="unknown layer 'nope'"):
    golden.export(imodel, x, out + "_other", layers=["nope"])
  with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
    assert json.load(f)["layers"].keys() == manifest["layers"].keys()
  dp = manifest["datapath"]
  assert manifest["acc_semantics"] == golden.ACC_SEMANTICS[dp["overflow"]]
  for layer, meta in manifest["layers"].items():
    d = os.path.join(out, meta["dir"])
    with open(os.path.join(d, "manifest.json"), encoding="utf-8") as f:
      assert json.load(f) == json.loads(json.dumps(meta))
    dual = dp["mode"] == "dual_lod"
    assert ("mant_table" in meta["files"]) == dual and ("lut" in meta["files"]) == (not dual)
    arrays = golden.load(out, layer)
    for name in meta["files"]:
      np.testing.assert_array_equal(_read(d, meta, name).astype(np.int64), arrays[name])
      f = meta["files"][name]
      np.testing.assert_array_equal(golden.read_memh(os.path.join(d, f["file"]), f["width"],
                                                     signed=f["signed"]),
                                    arrays[name].reshape(-1))


def test_rerun_layers_bit_exactly_from_hex(exported):
  """acc recomputed from the hex files only (weight codes, input, LUT or cut + mantissa table)."""
  out, manifest, _, _ = exported
  clipped = step_sat_differs = clamp_events = 0
  for layer, meta in manifest["layers"].items():
    d = os.path.join(out, meta["dir"])
    code = meta["weight_code"]
    length = code["mant_bits"]
    sign, shift, mant = (_read(d, meta, k) for k in ("w_sign", "w_shift", "w_mant"))
    packed = _read(d, meta, "w_code")
    assert np.all(packed == (sign << (code["shift_bits"] + length)) | (shift << length) | mant)
    w = np.where(sign == 1, -1, 1) * (mant << shift)
    assert np.all(w == _read(d, meta, "w_level"))
    x = _read(d, meta, "input")
    if meta["mode"] == "dual_lod":
      dl = meta["dual_lod"]
      assert dl["rounding"] == manifest["datapath"]["rounding"] and dl["length"] == length
      table = _read(d, meta, "mant_table")
      assert table.shape == (2 ** length,) * 2
      assert np.all(table == np.outer(np.arange(2 ** length), np.arange(2 ** length)))
      fields = [_read(d, meta, k) for k in ("act_sign", "act_shift", "act_mant")]
      want = np.vectorize(lambda v: _cut(v, length, dl["rounding"]), otypes=[object] * 3)(x)
      for got, exp in zip(fields, want):
        assert np.all(got == exp), layer
      assert np.all(_read(d, meta, "act_cut") == np.where(fields[0] == 1, -1, 1)
                    * (fields[2] << fields[1]))
      assert int(np.max(fields[1])) <= dl["max_act_shift"]
      # Products from the table: (-1)**(sw ^ sa) * (T[mw, ma] << (kw + ka)), padding = zero act.
      ops = [_operands(meta, f, [sign, shift, mant]) for f in fields]
      (sa, _, oshape), (ka, _, _), (ma, wf, _) = ops
      sw, kw, mw = (f.astype(np.int64) for f in wf)
      sa, ka, ma = (f.astype(np.int64) for f in (sa, ka, ma))
      t = table.astype(np.int64)
      prods = (np.where((sa[:, :, None] ^ sw[None]) == 1, -1, 1)
               * (t[mw[None], ma[:, :, None]] << (kw[None] + ka[:, :, None])))
    else:
      # Exact: LUT_a[m] << s with sign; the exported LUT samples satisfy LUT_a[j] = j * a.
      lut, acts = _read(d, meta, "lut"), _read(d, meta, "lut_act")
      assert lut.shape == (len(acts), 2 ** length)
      assert np.all(lut == np.outer(acts, np.arange(2 ** length)))
      a, wf, oshape = _operands(meta, x, [sign, shift, mant])
      sw, kw, mw = (f.astype(np.int64) for f in wf)
      a = a.astype(np.int64)
      prods = np.where(sw[None] == 1, -1, 1) * ((a[:, :, None] * mw[None]) << kw[None])
    s = prods.astype(object).sum(axis=1)
    bits = meta["acc_bits"]
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if meta["overflow"] == "saturate":
      assert meta["acc_semantics"].startswith("acc = the saturating register")
      acc, events = _register(prods.astype(object), bits)
      clamp_events += events
      step_sat_differs += int(np.sum(acc != np.vectorize(lambda v: min(max(v, lo), hi),
                                                         otypes=[object])(s)))
      acc = acc.reshape(oshape)
    else:
      acc = _accumulate(s, meta).reshape(oshape)
    np.testing.assert_array_equal(acc.astype(np.int64), _read(d, meta, "acc").astype(np.int64),
                                  err_msg=layer)
    clipped += int(np.sum((s < lo) | (s > hi)))
  if manifest["datapath"]["overflow"] == "saturate":
    # The register clamped, and somewhere its result differs from the clip of the sum.
    assert clamp_events > 0 and step_sat_differs > 0, (clamp_events, step_sat_differs)
  if manifest["datapath"]["overflow"] == "clip":
    assert clipped > 0


def test_requant_epilogue_and_logits_from_files(exported):
  """acc -> epilogue -> next rq_pre -> requant -> input, and the output's dequantization."""
  out, manifest, _, _ = exported
  layers = manifest["layers"]
  order = manifest["layer_order"]
  assert order == ["conv_init", "conv1", "fc1", "head"]
  final = None
  for prev, nxt in zip(order, order[1:] + [None]):
    pm = layers[prev]
    for op in pm["epilogue"]:
      assert op["formula"]
    q = _epilogue(pm["epilogue"], _read(os.path.join(out, pm["dir"]), pm, "acc"))
    if nxt is None:
      final = q
      break
    nm = layers[nxt]
    d = os.path.join(out, nm["dir"])
    np.testing.assert_array_equal(q.astype(np.int64), _read(d, nm, "rq_pre").astype(np.int64),
                                  err_msg=f"{prev} -> {nxt}")
    rq = nm["requant"]
    bias, mult, sh = (_read(d, nm, k) for k in ("rq_bias", "rq_multiplier", "rq_shift"))
    total = ((q << rq["acc_shift"]) + bias) * mult
    rounding = np.where(sh > 0, 1 << np.maximum(sh - 1, 0), 0)
    want = np.clip((total + rounding) >> sh, rq["lo"], rq["hi"])
    np.testing.assert_array_equal(want.astype(np.int64),
                                  _read(d, nm, "input").astype(np.int64), err_msg=nxt)
  (o,) = manifest["outputs"]
  assert o["integer"] and o["layer"] == "head" and layers["head"]["output"]["dir"] == o["dir"]
  q = _read(os.path.join(out, o["dir"]), o, "q")
  np.testing.assert_array_equal(q.astype(np.int64), final.astype(np.int64))
  m = np.array(o["m"], np.float64).reshape(o["m_shape"])
  off = np.array(o["o"], np.float64).reshape(o["o_shape"])
  with np.load(os.path.join(out, o["dir"], "golden.npz")) as z:
    np.testing.assert_array_equal(z["m"], m)
    np.testing.assert_array_equal(z["o"], off)
  logits = np.load(os.path.join(out, "logits.npy"))
  prod = q.astype(np.float32) * m.astype(np.float32)
  want = prod + off.astype(np.float32)
  # float32 arithmetic (a fused multiply-add allowed): a few ulps of the terms.
  tol = 4 * np.finfo(np.float32).eps * (np.abs(prod) + np.abs(off))
  assert np.all(np.abs(logits - want) <= tol), np.max(np.abs(logits - want) - tol)
  assert np.all(np.abs(logits - (q.astype(np.float64) * m + off)) <= 2 * tol)


def test_epilogue_formulas_fill_missing():
  ops = golden.epilogue_with_formulas(
      [{"op": "reshape", "new_sizes": (2, 3)}, {"op": "bias", "acc_shift": 1,
                                                 "bias": np.array([1]), "formula": "mine"},
       {"op": "unheard_of"}])
  assert ops[0]["formula"].startswith("q = reshape(q, new_sizes)")
  assert ops[0]["new_sizes"] == [2, 3] and ops[1]["formula"] == "mine"
  assert ops[1]["bias"] == [1] and "lax.unheard_of" in ops[2]["formula"]


def test_hexio_format_and_errors(tmp_path):
  p = str(tmp_path / "w.hex")
  golden.write_memh(p, np.array([[-3, 127], [-128, 0]]), 8, comments=["test"])
  assert open(p, encoding="ascii").read().splitlines() == ["// test", "fd", "7f", "80", "00"]
  assert golden.read_memh(p, 8).tolist() == [-3, 127, -128, 0]
  golden.write_memh(p, np.array([200, 5]), 8, signed=False)
  assert golden.read_memh(p, 8, signed=False).tolist() == [200, 5]
  with pytest.raises(ValueError, match="do not fit 8-bit signed"):
    golden.write_memh(p, np.array([128]), 8)
