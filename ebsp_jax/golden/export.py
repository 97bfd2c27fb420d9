"""Golden vectors of an integer-mode network, per layer, for RTL verification (issue 3 §3).

``export(imodel, x, out_dir)`` (or ``export_run(workdir, x, out_dir)`` for a training run's
quantized model, ``docs/artifact.md``) runs :class:`ebsp_jax.quant.IntegerModel` on a (small) float
batch ``x`` and writes, for every quantized conv/dense ``<layer>``, a directory (the layer path
with ``/`` replaced by ``.``) of ``$readmemh`` files plus ``golden.npz`` and ``manifest.json``,
and at the top ``manifest.json``, ``x.npy``, ``logits.npy`` and ``output_<i>/`` (the network
output's integer tensor and its float64 dequantization constants ``m``, ``o``).

The format (every file, width, signedness, ordering, the datapath in both modes, the
accumulator semantics, the requantizer, the epilogue ops and how to recompute a layer from the
files alone) is specified in ``ebsp_jax/golden/FORMAT.md``; the manifests repeat the formulas.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ebsp_jax.arith import geometry as arith_geometry
from ebsp_jax.arith.datapath import act_split, lut_fill, mantissa_table
from ebsp_jax.golden.hexio import write_memh
from ebsp_jax.numerics import artifact, encode
from ebsp_jax.quant import from_artifact
from ebsp_jax.quant.lowering import FloatTensor, Interpreter, IntTensor

FORMAT_VERSION = 3
FORMAT_DOC = "ebsp_jax/golden/FORMAT.md"

#: Definitions the formulas of the manifests use.
DEFINITIONS = {
    "mul_shift_round(x, M, n)":
        "clip(floor((x * M + 2**(n-1)) / 2**n), -2**31, 2**31 - 1) for n >= 1, clip(x * M, "
        "-2**31, 2**31 - 1) for n == 0; x * M exact (64-bit), floor = arithmetic right shift "
        "(round half up)",
    "rshift_round(q, k)":
        "mul_shift_round(q, 2**30, 30 + k) = floor((q + 2**(k-1)) / 2**k) for 1 <= k <= 32, "
        "q for k == 0, 0 for k > 32 (|q| < 2**31)",
    "clip(v, lo, hi)": "min(max(v, lo), hi)",
    "broadcast": "numpy broadcasting: constants of the epilogue/requantizer have the rank of q "
                 "with size-1 axes (batch axis always 1); per-channel constants vary along the "
                 "channel axis only",
}

#: Accumulator semantics per ``overflow`` setting (``S``: the exact sum of the products).
ACC_SEMANTICS = {
    "wrap": "acc = S mod 2**acc_bits, centred: the low acc_bits bits of the exact sum S of the "
            "products, sign-extended (equal to a register that wraps on every add, in any order)",
    "saturate": "acc = the saturating register: r = 0; for each product p in K order: "
                "r = clip(r + p, -2**(acc_bits-1), 2**(acc_bits-1) - 1); acc = r. K order: "
                "dot_general: the contracting dims flattened row-major (dimension-number "
                "order); conv: kernel taps row-major (in rhs_spec order, e.g. KH then KW), "
                "within a tap the group's input channels ascending; padding products are 0 "
                "and are added too (they cannot clamp). Order-dependent where a partial sum "
                "leaves the range",
    "clip": "acc = clip(S, -2**(acc_bits-1), 2**(acc_bits-1) - 1): clip of the exact sum S "
            "(the adds are exact with guard bits, one saturation when the result is written "
            "out), NOT per-add saturation",
    "error": "acc = S exactly (the export raises OverflowError if some S does not fit acc_bits; "
             "otherwise identical to wrap)",
}

#: Formulas of epilogue ops the lowering logs without one (``q``: the running int32 tensor).
EPILOGUE_FORMULAS = {
    "bias": "q = (q << acc_shift) + bias",
    "maximum": "q = maximum(q, const)",
    "minimum": "q = minimum(q, const)",
    "rounding_shift_right": "q = mul_shift_round(q, 2**30, 30 + shift) (= rshift_round(q, "
                            "shift); shift scalar or per channel)",
    "rescale": "q = mul_shift_round(q, multiplier, shift) (per channel)",
    "add": "q = q + q_other, q_other: the tensor of layer 'other' after the ops of its own "
           "epilogue listed so far (both already rescaled to the common scale)",
    "negate": "q = -q",
    "sign": "q = q * sign (sign in {-1, 0, 1} per channel)",
    "reduce_window_max": "q = max over each window of q (lax.reduce_window; window_dimensions, "
                         "window_strides, padding (low, high) per axis of q; padded elements "
                         "are -2**31)",
    "reduce_window_sum": "q = int32 sum over each window of q (lax.reduce_window; "
                         "window_dimensions, window_strides, padding per axis; padded elements "
                         "are 0)",
    "reduce_sum": "q = int32 sum of q over axes",
    "reduce_max": "q = max of q over axes",
    "reduce_min": "q = min of q over axes",
    "reshape": "q = reshape(q, new_sizes) (row-major order)",
    "transpose": "q = transpose(q, permutation)",
    "squeeze": "q = squeeze(q, dimensions)",
    "broadcast_in_dim": "q = lax.broadcast_in_dim(q, shape, broadcast_dimensions)",
    "slice": "q = q[start_indices : limit_indices : strides] per axis",
    "rev": "q = flip(q, dimensions)",
    "pad": "q = lax.pad(q, fill, padding_config) ((low, high, interior) per axis; fill 0 after "
           "a zero-padding, -2**31 after a -inf padding)",
    "concatenate": "q = concatenate([q, ...], dimension)",
}


def layer_dirname(layer: str) -> str:
  """Directory name of a layer path (``'/'`` -> ``'.'``)."""
  return layer.replace("/", ".")


def _json(v: Any):
  if isinstance(v, dict):
    return {str(k): _json(x) for k, x in v.items()}
  if hasattr(v, "_asdict"):
    return {k: _json(x) for k, x in v._asdict().items()}
  if isinstance(v, (tuple, list)):
    return [_json(x) for x in v]
  if isinstance(v, np.ndarray):
    return v.tolist()
  if isinstance(v, (np.integer,)):
    return int(v)
  if isinstance(v, (np.floating,)):
    return float(v)
  if isinstance(v, (int, float, str, bool)) or v is None:
    return v
  return str(v)


def lut_samples(a: np.ndarray, n: int) -> np.ndarray:
  """Up to ``n`` distinct activations of ``a`` spread over its range (min and max included)."""
  u = np.unique(np.asarray(a).reshape(-1))
  if len(u) <= n:
    return u
  return u[np.unique(np.linspace(0, len(u) - 1, n).round().astype(int))]


def epilogue_with_formulas(ops: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
  """The epilogue op records as JSON, each with a ``formula`` (the lowering's, else ours)."""
  out = []
  for op in ops:
    e = _json(dict(op))
    if "formula" not in e:
      e["formula"] = EPILOGUE_FORMULAS.get(
          e["op"], f"q = lax.{e['op']}(q, **params) with the listed params (jax.lax semantics)")
    out.append(e)
  return out


def _layout(spec: Sequence[int], first: str, second: str) -> str:
  """Layout letters of a lax conv spec (``(batch/out, feature/in, spatial...)`` axis indices)."""
  spatial = {1: "W", 2: "HW", 3: "DHW"}.get(len(spec) - 2, "S" * (len(spec) - 2))
  letters = [""] * len(spec)
  for axis, letter in zip(spec, first + second + spatial):
    letters[axis] = letter
  return "".join(letters)


def conv_geometry(kwargs: Dict[str, Any], in_shape: Sequence[int],
                  w_shape: Sequence[int]) -> Dict[str, Any]:
  """Layouts and explicit padding of a ``conv_general_dilated`` (as ``jax.lax`` resolves it:
  :func:`ebsp_jax.arith.geometry.conv_geometry`)."""
  geo = arith_geometry.conv_geometry(
      in_shape, w_shape, kwargs.get("window_strides"), kwargs.get("padding", "VALID"),
      kwargs.get("lhs_dilation"), kwargs.get("rhs_dilation"), kwargs.get("dimension_numbers"),
      kwargs.get("feature_group_count", 1))
  lhs_spec, rhs_spec, out_spec = (tuple(int(i) for i in s) for s in geo.dnums)
  return {
      "input_layout": _layout(lhs_spec, "N", "C"),
      "kernel_layout": _layout(rhs_spec, "O", "I"),
      "output_layout": _layout(out_spec, "N", "C"),
      "padding_pairs": [[lo, hi] for lo, hi in geo.padding],
  }


def _network_outputs(imodel, x: jax.Array) -> List[Optional[Dict[str, Any]]]:
  """The network outputs before dequantization: ``[{'q', 'm', 'o', 'layer'} | None]``.

  Re-runs the lowering of ``imodel`` (same interpreter, same constants) keeping the final
  :class:`~ebsp_jax.quant.lowering.IntTensor` of every output: ``q`` int32 (output shape),
  ``m``/``o`` float64 (broadcastable, batch axis 1), so that ``out = q * m + o``.
  """
  meta: List[Optional[Tuple[np.ndarray, np.ndarray, str]]] = []

  def run(weights, xx):
    fn = lambda v: imodel.model.apply(imodel.variables, v, **imodel.apply_kwargs)
    closed = jax.make_jaxpr(fn)(jax.ShapeDtypeStruct(xx.shape, xx.dtype))
    interp = Interpreter(imodel.layers, weights, config=imodel.config.datapath,
                         strict=imodel.config.strict, float_inputs=imodel.float_inputs)
    outs = interp._eval(closed.jaxpr, closed.consts,  # pylint: disable=protected-access
                        [FloatTensor(jnp.asarray(xx))])
    meta.clear()
    meta.extend((np.asarray(o.m, np.float64), np.asarray(o.o, np.float64), o.layer)
                if isinstance(o, IntTensor) else None for o in outs)
    return [o.q if isinstance(o, IntTensor) else None for o in outs]

  qs = jax.jit(run)(imodel.weights, jnp.asarray(x))
  return [None if mo is None else {"q": np.asarray(q).astype(np.int64), "m": mo[0], "o": mo[1],
                                   "layer": mo[2]} for q, mo in zip(qs, meta)]


def export(imodel, x: jax.Array, out_dir: str, *, layers: Optional[Sequence[str]] = None,
           num_lut_samples: int = 8) -> Dict[str, Any]:
  """Writes golden vectors of ``imodel`` on input ``x`` (format: ``FORMAT.md``).

  Args:
    imodel: an :class:`ebsp_jax.quant.IntegerModel`.
    x: float input batch, e.g. float32 ``(N, H, W, C)`` (keep it small: every tensor is
      written as text).
    out_dir: output directory (created).
    layers: layer paths to export (default: all quantized layers).
    num_lut_samples: sample activations per LUT (exact mode).

  Returns:
    The manifest (also written to ``out_dir/manifest.json``).

  Raises:
    ValueError: an unknown layer in ``layers``.
    OverflowError: ``overflow='error'`` and some accumulator overflowed.
  """
  logits, captured = imodel.apply(jnp.asarray(x), capture=True)
  records = imodel.records
  # records are in execution order (captured comes back from jit with sorted keys).
  order = [k for k in records if k in captured] + [k for k in captured if k not in records]
  names = order if layers is None else [k for k in order if k in layers]
  for layer in [] if layers is None else layers:
    if layer not in captured:
      raise ValueError(f"golden.export: unknown layer '{layer}'; known: {sorted(captured)}")
  os.makedirs(out_dir, exist_ok=True)
  dp = imodel.config.datapath
  manifest: Dict[str, Any] = {
      "format_version": FORMAT_VERSION,
      "format_doc": FORMAT_DOC,
      "input_shape": list(np.shape(x)),
      "datapath": _json(dp.__dict__),
      "acc_semantics": ACC_SEMANTICS[dp.overflow],
      "definitions": DEFINITIONS,
      "hex": "one word per line, ceil(width/4) hex digits, two's complement of width bits "
             "(unsigned files: plain binary), C (row-major) order; '//' lines are comments",
      "layer_order": names,
      "layers": {},
  }
  np.save(os.path.join(out_dir, "x.npy"), np.asarray(x))
  np.save(os.path.join(out_dir, "logits.npy"), np.asarray(logits))
  for layer in names:
    manifest["layers"][layer] = _export_layer(imodel, layer, captured[layer], records[layer],
                                              os.path.join(out_dir, layer_dirname(layer)),
                                              num_lut_samples)
  manifest["outputs"] = _export_outputs(imodel, x, logits, out_dir, manifest["layers"])
  with open(os.path.join(out_dir, "manifest.json"), "w", encoding="utf-8") as f:
    json.dump(manifest, f, indent=1, sort_keys=True)
  return manifest


def export_run(run: str, x: jax.Array, out_dir: str, *,
               layers: Optional[Sequence[str]] = None, num_lut_samples: int = 8,
               **datapath: Any) -> Dict[str, Any]:
  """:func:`export` of a finished training run's integer model.

  Args:
    run: the run's workdir or its ``quantized_model.safetensors`` (``docs/artifact.md``, read by
      ``ebsp_jax.numerics.artifact.read``: the run's codes, scales and formats, nothing refit).
    x, out_dir, layers, num_lut_samples: as in :func:`export`.
    **datapath: options of ``quant.to_integer`` (default: the datapath the run trained for).

  Raises:
    ValueError: a missing or bad quantized model (one line), or as :func:`export`.
  """
  qm = artifact.read(run)
  manifest = export(from_artifact.integer_model(qm, **datapath), x, out_dir, layers=layers,
                    num_lut_samples=num_lut_samples)
  return manifest


def _write(d: str, tag: str, arrays: Sequence[tuple]) -> Dict[str, Any]:
  """Writes ``(name, int array, width, signed)`` as ``$readmemh`` files; returns ``files``."""
  files = {}
  for name, arr, width, signed in arrays:
    fname = f"{name}.hex"
    write_memh(os.path.join(d, fname), arr, width, signed=signed,
               comments=[f"{tag} {name} shape={list(arr.shape)} width={width} "
                         f"{'signed' if signed else 'unsigned'}"])
    files[name] = {"file": fname, "shape": list(arr.shape), "width": width, "signed": signed}
  return files


def _export_outputs(imodel, x, logits, out_dir: str,
                    layer_entries: Dict[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
  """``output_<i>/``: the int32 output tensor ``q`` and its dequantization ``m``, ``o``."""
  flat = jax.tree_util.tree_leaves(logits)
  entries = []
  for i, (res, out) in enumerate(zip(_network_outputs(imodel, x), flat)):
    if res is None:
      entries.append({"index": i, "integer": False,
                      "note": "a float output (not produced by an integer layer)"})
      continue
    d = os.path.join(out_dir, f"output_{i}")
    os.makedirs(d, exist_ok=True)
    q, m, o = res["q"], res["m"], res["o"]
    files = _write(d, f"output {i}", [("q", q, 32, True)])
    np.savez(os.path.join(d, "golden.npz"), q=q, m=m, o=o, out=np.asarray(out))
    entry = {
        "index": i, "integer": True, "dir": f"output_{i}", "layer": res["layer"],
        "files": files, "out_shape": list(np.shape(out)), "out_dtype": str(np.asarray(out).dtype),
        "m": m.tolist(), "m_shape": list(m.shape), "o": o.tolist(), "o_shape": list(o.shape),
        "formula": "out = float32(q) * float32(m) + float32(o) (float32 arithmetic; m and o are "
                   "float64 here, broadcast against q; q = the layer's acc after its epilogue)",
    }
    with open(os.path.join(d, "manifest.json"), "w", encoding="utf-8") as f:
      json.dump(entry, f, indent=1, sort_keys=True)
    if res["layer"] in layer_entries:   # the layer whose epilogue ends in this output
      le = layer_entries[res["layer"]]
      le["output"] = {"index": i, "dir": f"output_{i}"}
      with open(os.path.join(out_dir, le["dir"], "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(le, f, indent=1, sort_keys=True)
    entries.append(entry)
  return entries


def _act_cut_arrays(a_in: np.ndarray, ap, length: int, rounding: str) -> Tuple[list, dict]:
  """Dual-LOD files: the cut activations and the constant mantissa-product table."""
  sign, shift, mant = (np.asarray(v).astype(np.int64) for v in act_split(
      jnp.asarray(a_in, jnp.int32), length, rounding))
  cut = np.where(sign == 1, -1, 1) * (mant << shift)
  mag_bits = ap.bits - (1 if ap.signed else 0)
  max_shift = max(0, mag_bits - length) + (1 if rounding == "round" else 0)
  max_cut = (1 << mag_bits) if rounding == "round" else (1 << mag_bits) - 1
  shift_width = max(1, max_shift.bit_length())
  table = mantissa_table(length).astype(np.int64)
  arrays = [
      ("act_sign", sign, 1, False),
      ("act_shift", shift, shift_width, False),
      ("act_mant", mant, length, False),
      ("act_cut", cut, max_cut.bit_length() + 1, True),
      ("mant_table", table, 2 * length, False),
  ]
  info = {
      "rounding": rounding, "length": length, "max_act_shift": max_shift,
      "cut": ("sign = (a < 0); mag = |a|; shift = max(0, bitlen(mag) - L) (bitlen(0) = 0); "
              + ("mant = mag >> shift (truncate: drop the low bits)" if rounding == "truncate"
                 else "mant = (mag + 2**(shift-1)) >> shift if shift > 0 else mag (round half "
                      "up in magnitude); if mant == 2**L: mant = 2**(L-1), shift += 1")
              + "; act_cut = (-1)**sign * (mant << shift)"),
      "product": "p = (-1)**(w_sign ^ act_sign) * (mant_table[w_mant, act_mant] << (w_shift + "
                 "act_shift)) = act_cut * w_level",
      "mant_table": "mant_table[i, j] = i * j, i, j < 2**L (row: weight mantissa, column: "
                    "activation mantissa; symmetric)",
  }
  return arrays, info


def _export_layer(imodel, layer: str, cap: Dict[str, jax.Array], rec, d: str,
                  num_lut_samples: int) -> Dict[str, Any]:
  os.makedirs(d, exist_ok=True)
  info = imodel.layers[layer]
  dp = imodel.config.datapath
  wp, ap = info.weight_pattern, info.act_pattern
  length = wp.length
  shift_bits = max(1, int(wp.max_shift).bit_length())
  code_width = 1 + shift_bits + length
  acc_bits = dp.acc_bits
  q_w = np.asarray(imodel.weights[layer]).astype(np.int64)
  sign, shift, mant = (np.asarray(v).astype(np.int64) for v in encode(q_w, wp))
  code = (sign << (shift_bits + length)) | (shift << length) | mant
  a_in = np.asarray(cap["input"]).astype(np.int64)
  arrays: List[tuple] = [
      ("input", a_in, ap.bits, ap.signed),
      ("w_level", q_w, wp.bits, True),
      ("w_sign", sign, 1, False),
      ("w_shift", shift, shift_bits, False),
      ("w_mant", mant, length, False),
      ("w_code", code, code_width, False),
  ]
  kwargs = {k: v for k, v in rec.kwargs}
  entry: Dict[str, Any] = {
      "dir": layer_dirname(layer),
      "op": rec.op,
      "lax_args": {k: _json(v) for k, v in rec.kwargs},
      "weight_pattern": {"bits": wp.bits, "length": wp.length, "signed": wp.signed,
                         "str": str(wp)},
      "act_format": {"bits": ap.bits, "signed": ap.signed, "lo": -ap.max_level if ap.signed else 0,
                     "hi": ap.max_level, "representation": "sign-magnitude range, stored as "
                     "two's complement" if ap.signed else "unsigned"},
      "act_scale": float(info.act_scale),
      "weight_scale": np.asarray(info.weight_scale, np.float64).reshape(-1).tolist(),
      "weight_code": {"sign_bits": 1, "shift_bits": shift_bits, "mant_bits": length,
                      "code_width": code_width,
                      "layout": f"code = sign << {shift_bits + length} | shift << {length} | mant",
                      "value": "w_level = (-1)**sign * (mant << shift)"},
      "mode": dp.mode,
      "acc_bits": acc_bits,
      "overflow": dp.overflow,
      "acc_semantics": ACC_SEMANTICS[dp.overflow],
      "acc_bound_bits": rec.acc_bound_bits,
      "input_kind": rec.input_kind,
      "epilogue": epilogue_with_formulas(imodel.epilogues.get(layer, [])),
  }
  if rec.op == "conv_general_dilated":
    entry["conv"] = conv_geometry(kwargs, a_in.shape, q_w.shape)
  if dp.mode == "dual_lod":
    cut_arrays, entry["dual_lod"] = _act_cut_arrays(a_in, ap, length, dp.rounding)
    arrays += cut_arrays
    entry["product"] = entry["dual_lod"]["product"]
  else:
    samples = lut_samples(a_in, num_lut_samples)
    lut = np.asarray(lut_fill(jnp.asarray(samples, jnp.int32), length)).astype(np.int64)
    arrays += [("lut_act", samples, ap.bits, ap.signed),
               ("lut", lut, ap.bits + length + 1, True)]
    entry["product"] = ("p = (-1)**w_sign * (LUT_a[w_mant] << w_shift) = a * w_level, "
                        "LUT_a[j] = j * a (j < 2**L)")
  arrays.append(("acc", np.asarray(cap["acc"]).astype(np.int64), acc_bits, True))
  if rec.input_kind == "requant":
    arrays += [
        ("rq_pre", np.asarray(cap["pre"]).astype(np.int64), 32, True),
        ("rq_bias", np.asarray(rec.bias).astype(np.int64), 32, True),
        ("rq_multiplier", np.asarray(rec.multiplier).astype(np.int64), 32, True),
        ("rq_shift", np.asarray(rec.shift).astype(np.int64), 8, False),
    ]
    entry["requant"] = {
        "acc_shift": int(rec.acc_shift), "lo": entry["act_format"]["lo"],
        "hi": entry["act_format"]["hi"],
        "formula": "input = clip(floor((((rq_pre << acc_shift) + rq_bias) * rq_multiplier + "
                   "2**(rq_shift-1)) / 2**rq_shift), lo, hi)  (no rounding term when "
                   "rq_shift == 0; bias/multiplier/shift broadcast against rq_pre)",
    }
  else:
    entry["input_quantization"] = ("input = quantize(x, act_format, act_scale): the level "
                                   "nearest to y = x * (1 / act_scale) (float32, each op "
                                   "correctly rounded; ties to the level with more trailing "
                                   "zero bits), clipped to [lo, hi] (float op on the network "
                                   "input x.npy)")
  entry["files"] = _write(d, layer, arrays)
  np.savez(os.path.join(d, "golden.npz"), **{name: arr for name, arr, _, _ in arrays})
  with open(os.path.join(d, "manifest.json"), "w", encoding="utf-8") as f:
    json.dump(entry, f, indent=1, sort_keys=True)
  return entry


def load(out_dir: str, layer: str) -> Dict[str, np.ndarray]:
  """The ``.npz`` arrays of one exported layer."""
  with np.load(os.path.join(out_dir, layer_dirname(layer), "golden.npz")) as z:
    return {k: z[k] for k in z.files}
