"""Golden vectors of an integer-mode network, per layer, for RTL verification (issue 3 §3).

``export(imodel, x, out_dir)`` runs :class:`ebsp_jax.quant.IntegerModel` on a (small) float
batch ``x`` and writes, for every quantized conv/dense ``<layer>`` (directory ``<layer>`` with
``/`` replaced by ``.``):

=================  =========================================================================
file (``.hex``)    content (word width, signedness; C order; shape in ``manifest.json``)
=================  =========================================================================
``input``          the layer's integer input activations (``act_bits``; signed two's
                   complement if the format is signed, else unsigned)
``w_level``        integer weight levels ``q`` (``pattern.bits``, signed)
``w_sign``         weight code sign bit (1 bit; 1 = negative)      | from ``ebsp_jax.encode``:
``w_shift``        weight code shift ``s`` (``shift_bits``)        | ``q = (-1)**sign *``
``w_mant``         weight code mantissa ``m`` (``L`` bits)         | ``(m << s)``
``w_code``         packed code ``sign << (shift_bits + L) | s << L | m`` (``code_width``)
``lut_act``        sample activations ``a_k`` (``act_bits``)
``lut``            ``LUT_a[k, j] = j * a_k``, ``j < 2**L`` (``act_bits + L + 1``, signed),
                   filled by ``ebsp_jax.arith.datapath.lut_fill`` (shifts and adds)
``acc``            the datapath's int32 accumulator (``acc_bits``, signed) (bias not added)
``rq_pre``         int32 input of the requantizer that produced ``input`` (32, signed)
``rq_bias``        int32 bias, broadcast against ``rq_pre`` (32, signed)
``rq_multiplier``  integer multiplier ``M`` (32, signed; always ``>= 0``)
``rq_shift``       right shift ``n`` (8, unsigned)
=================  =========================================================================

The manifest's ``epilogue`` lists the integer ops applied to ``acc`` after the layer (bias with
``acc_shift`` fractional bits, ReLU ``maximum``/``minimum`` constants, pooling windows, residual
``rescale``/``add``, reshapes) up to the next layer's ``rq_pre``.

Requantization (``rq_*``; absent for the first layer, whose input is the quantized network
input): ``input = clip(floor(((rq_pre << acc_shift) + rq_bias) * M / 2**n + 1/2), lo, hi)``
with ``acc_shift``, ``lo``, ``hi`` in the manifest (see :mod:`ebsp_jax.quant.requant`).
The same arrays, with their shapes, are in ``<layer>/golden.npz``; ``manifest.json`` at the
top lists the layers and repeats all widths, shapes, layouts and the ``lax`` arguments.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ebsp_jax.arith.datapath import lut_fill
from ebsp_jax.golden.hexio import write_memh
from ebsp_jax.numerics import encode

FORMAT_VERSION = 1


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
  if isinstance(v, (int, float, str, bool)) or v is None:
    return v
  return str(v)


def lut_samples(a: np.ndarray, n: int) -> np.ndarray:
  """Up to ``n`` distinct activations of ``a`` spread over its range (min and max included)."""
  u = np.unique(np.asarray(a).reshape(-1))
  if len(u) <= n:
    return u
  return u[np.unique(np.linspace(0, len(u) - 1, n).round().astype(int))]


def export(imodel, x: jax.Array, out_dir: str, *, layers: Optional[Sequence[str]] = None,
           num_lut_samples: int = 8) -> Dict[str, Any]:
  """Writes golden vectors of ``imodel`` on input ``x``.

  Args:
    imodel: an :class:`ebsp_jax.quant.IntegerModel`.
    x: float input batch (keep it small: every tensor is written as text).
    out_dir: output directory (created).
    layers: layer paths to export (default: all quantized layers).
    num_lut_samples: sample activations per LUT.

  Returns:
    The manifest (also written to ``out_dir/manifest.json``).
  """
  logits, captured = imodel.apply(jnp.asarray(x), capture=True)
  records = imodel.records
  os.makedirs(out_dir, exist_ok=True)
  names = list(captured) if layers is None else list(layers)
  manifest: Dict[str, Any] = {
      "format_version": FORMAT_VERSION,
      "input_shape": list(np.shape(x)),
      "datapath": _json(imodel.config.datapath.__dict__),
      "hex": "one word per line, two's complement of width bits, row-major; see each layer",
      "layers": {},
  }
  np.save(os.path.join(out_dir, "logits.npy"), np.asarray(logits))
  for layer in names:
    if layer not in captured:
      raise ValueError(f"golden.export: unknown layer '{layer}'; known: {sorted(captured)}")
    manifest["layers"][layer] = _export_layer(imodel, layer, captured[layer], records[layer],
                                              os.path.join(out_dir, layer_dirname(layer)),
                                              num_lut_samples)
  with open(os.path.join(out_dir, "manifest.json"), "w", encoding="utf-8") as f:
    json.dump(manifest, f, indent=1, sort_keys=True)
  return manifest


def _export_layer(imodel, layer: str, cap: Dict[str, jax.Array], rec, d: str,
                  num_lut_samples: int) -> Dict[str, Any]:
  os.makedirs(d, exist_ok=True)
  info = imodel.layers[layer]
  wp, ap = info.weight_pattern, info.act_pattern
  length = wp.length
  shift_bits = max(1, int(wp.max_shift).bit_length())
  code_width = 1 + shift_bits + length
  acc_bits = imodel.config.datapath.acc_bits
  q_w = np.asarray(imodel.weights[layer]).astype(np.int64)
  sign, shift, mant = (np.asarray(v).astype(np.int64) for v in encode(q_w, wp))
  code = (sign << (shift_bits + length)) | (shift << length) | mant
  a_in = np.asarray(cap["input"]).astype(np.int64)
  samples = lut_samples(a_in, num_lut_samples)
  lut = np.asarray(lut_fill(jnp.asarray(samples, jnp.int32), length)).astype(np.int64)
  arrays: List[tuple] = [
      ("input", a_in, ap.bits, ap.signed),
      ("w_level", q_w, wp.bits, True),
      ("w_sign", sign, 1, False),
      ("w_shift", shift, shift_bits, False),
      ("w_mant", mant, length, False),
      ("w_code", code, code_width, False),
      ("lut_act", samples, ap.bits, ap.signed),
      ("lut", lut, ap.bits + length + 1, True),
      ("acc", np.asarray(cap["acc"]).astype(np.int64), acc_bits, True),
  ]
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
                      "layout": f"code = sign << {shift_bits + length} | shift << {length} | mant"},
      "acc_bits": acc_bits,
      "acc_bound_bits": rec.acc_bound_bits,
      "input_kind": rec.input_kind,
      "epilogue": _json(imodel.epilogues.get(layer, [])),
  }
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
  files = {}
  for name, arr, width, signed in arrays:
    fname = f"{name}.hex"
    write_memh(os.path.join(d, fname), arr, width, signed=signed,
               comments=[f"{layer} {name} shape={list(arr.shape)} width={width} "
                         f"{'signed' if signed else 'unsigned'}"])
    files[name] = {"file": fname, "shape": list(arr.shape), "width": width, "signed": signed}
  np.savez(os.path.join(d, "golden.npz"), **{name: arr for name, arr, _, _ in arrays})
  entry["files"] = files
  with open(os.path.join(d, "manifest.json"), "w", encoding="utf-8") as f:
    json.dump(entry, f, indent=1, sort_keys=True)
  return entry


def load(out_dir: str, layer: str) -> Dict[str, np.ndarray]:
  """The ``.npz`` arrays of one exported layer."""
  with np.load(os.path.join(out_dir, layer_dirname(layer), "golden.npz")) as z:
    return {k: z[k] for k in z.files}
