"""Throughput of the EBSP datapath emulation (``ebsp_jax.arith``) vs native arithmetic.

Not a test. Prints a table and writes JSON. Cases, timed side by side in one run, interleaved
round-robin (the machine is shared and noisy), medians reported with ratios to float32:

* matmul ``M x K x N`` (default 1024^3): native float32, int8 x int8 -> int32 and
  bf16 x bf16 -> float32 (and, on CPU, oneDNN's u8 x s8 -> int32 GEMM as a bare custom call);
  ``arith`` fast with ``accumulation="auto"`` (uint8 activations x ``6b(L3)`` weights: the
  paper's format; and int8 activations), its int8, bf16 and oneDNN paths forced, dual-LOD
  mode, and the literal reference datapath;
* ResNet-style 3x3 convolution (default batch 8, 56x56x64 -> 64, stride 1, SAME, NHWC):
  the same set;
* images/s of integer-mode ResNet-20 (32x32) and ResNet-50 (224x224) vs the same float model,
  when the integer mode (``ebsp_jax.quant.to_integer``) is available; skipped with a message
  otherwise (``--networks`` to enable; slow on CPU).

Usage::

    python -m benchmarks.arith --json benchmarks/arith.json [--repeats 7] [--size 1024]
        [--conv-batch 8] [--reference-repeats 1] [--no-reference] [--networks]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import device_description  # noqa: E402
from ebsp_jax import BitPattern, arith  # noqa: E402
from ebsp_jax.arith import onednn, platform  # noqa: E402

MM = (((1,), (0,)), ((), ()))
PATTERN = BitPattern(6, 3)


def _block(x):
  return jax.block_until_ready(x)


def interleaved(cases: Dict[str, Callable[[], object]], repeats: int,
                sparse: Optional[Dict[str, int]] = None) -> Dict[str, Dict[str, List[float]]]:
  """Wall and process-CPU seconds per call of each case, round-robin.

  ``sparse[name] = r`` times a (slow) case only every ``r``-th round, at least once. CPU time
  (all threads of this process) is less disturbed than wall time by other processes on a
  shared machine; both are reported.
  """
  sparse = sparse or {}
  for fn in cases.values():      # compile + warm up
    _block(fn())
  samples: Dict[str, Dict[str, List[float]]] = {k: {"wall": [], "cpu": []} for k in cases}
  for r in range(repeats):
    for k, fn in cases.items():
      if r % sparse.get(k, 1) and samples[k]["wall"]:
        continue
      t0, c0 = time.perf_counter(), time.process_time()
      _block(fn())
      samples[k]["wall"].append(time.perf_counter() - t0)
      samples[k]["cpu"].append(time.process_time() - c0)
  return samples


def _rows(samples, ops: float, base: str) -> List[dict]:
  base_w = statistics.median(samples[base]["wall"])
  base_c = statistics.median(samples[base]["cpu"])
  rows = []
  for k, v in samples.items():
    w, c = statistics.median(v["wall"]), statistics.median(v["cpu"])
    rows.append(dict(case=k, median_ms=w * 1e3, cpu_ms=c * 1e3, gops=ops / w / 1e9,
                     vs_float32=base_w / w, vs_float32_cpu=base_c / c, samples=len(v["wall"])))
  return rows


def _weights(rng, shape):
  return jnp.asarray(rng.choice(PATTERN.levels, size=shape).astype(np.int8))


def _cpu():
  return jax.devices("cpu")[0]


def _exact_rows(a: np.ndarray, w: np.ndarray, rows: int = 32) -> tuple:
  """Row indices and their exact int64 products (a sample when the matmul is large)."""
  idx = np.arange(a.shape[0]) if a.shape[0] <= rows else np.random.default_rng(7).choice(
      a.shape[0], rows, replace=False)
  return idx, a[idx].astype(np.int64) @ w.astype(np.int64)


def matmul_cases(size: int, reference: bool):
  m = k = n = size
  rng = np.random.default_rng(0)
  a_u8 = jnp.asarray(rng.integers(0, 256, (m, k), dtype=np.uint8))
  a_i8 = jnp.asarray(rng.integers(-128, 128, (m, k), dtype=np.int8))
  w = _weights(rng, (k, n))
  a_f, w_f = a_u8.astype(jnp.float32), w.astype(jnp.float32)
  f32 = jax.jit(lambda x, y: x @ y)
  i8 = jax.jit(lambda x, y: lax.dot_general(x, y, MM, preferred_element_type=jnp.int32))
  bf = jax.jit(lambda x, y: lax.dot_general(x.astype(jnp.bfloat16), y.astype(jnp.bfloat16), MM,
                                            preferred_element_type=jnp.float32))
  ar = lambda **kw: jax.jit(lambda x, y: arith.dot_general(x, y, MM, pattern=PATTERN, **kw))
  fast, int8_path, bf16 = ar(), ar(accumulation="int32"), ar(accumulation="bfloat16")
  dual, ref = ar(mode="dual_lod"), ar(method="reference")
  cases = {
      "native float32": lambda: f32(a_f, w_f),
      "native int8->int32": lambda: i8(a_i8, w),
      "native bf16->float32": lambda: bf(a_i8, w),
      "arith fast auto (uint8 x 6b(L3))": lambda: fast(a_u8, w),
      "arith fast auto (int8 x 6b(L3))": lambda: fast(a_i8, w),
      "arith fast int8 path (uint8)": lambda: int8_path(a_u8, w),
      "arith fast bf16 path (uint8)": lambda: bf16(a_u8, w),
      "arith fast dual-LOD auto (uint8)": lambda: dual(a_u8, w),
  }
  checks = [("fast", fast), ("bf16 path", bf16), ("int8 path", int8_path)]
  if jax.default_backend() == "cpu" and onednn.available():
    dnnl, raw = ar(accumulation="onednn"), jax.jit(onednn.gemm)
    cases["native oneDNN u8s8->int32 (custom call)"] = lambda: raw(a_u8, w)
    cases["arith fast oneDNN path (uint8)"] = lambda: dnnl(a_u8, w)
    checks.append(("oneDNN path", dnnl))
  elif jax.default_backend() == "cpu":
    print(f"oneDNN kernel unavailable: {onednn.status()}")
  if reference:
    cases["arith reference (uint8)"] = lambda: ref(a_u8, w)
  # Independent check: int64 numpy products (of sampled rows when the matmul is large).
  idx, exact = _exact_rows(np.asarray(a_u8), np.asarray(w))
  for name, fn in checks:
    got = np.asarray(fn(a_u8, w))[idx]
    assert np.array_equal(got, exact), f"{name} matmul is not exact"
  return cases, 2.0 * m * k * n, f"matmul {m}x{k}x{n}"


def conv_cases(batch: int, hw: int, c: int, reference: bool):
  rng = np.random.default_rng(1)
  x_u8 = jnp.asarray(rng.integers(0, 256, (batch, hw, hw, c), dtype=np.uint8))
  x_i8 = jnp.asarray(rng.integers(-128, 128, (batch, hw, hw, c), dtype=np.int8))
  w = _weights(rng, (3, 3, c, c))
  dn = ("NHWC", "HWIO", "NHWC")
  conv = lambda x, y, **kw: lax.conv_general_dilated(x, y, (1, 1), "SAME", dimension_numbers=dn,
                                                     **kw)
  f32 = jax.jit(lambda x, y: conv(x, y))
  i8 = jax.jit(lambda x, y: conv(x, y, preferred_element_type=jnp.int32))
  i8f = jax.jit(lambda x, y: conv(x, y, preferred_element_type=jnp.float32))
  bfn = jax.jit(lambda x, y: conv(x.astype(jnp.bfloat16), y.astype(jnp.bfloat16)))
  ar = lambda **kw: jax.jit(lambda x, y: arith.conv_general_dilated(
      x, y, (1, 1), "SAME", dimension_numbers=dn, pattern=PATTERN, **kw))
  fast, dual, ref = ar(), ar(mode="dual_lod"), ar(method="reference")
  f32path, bf16 = ar(accumulation="float32"), ar(accumulation="bfloat16")
  x_f, w_f = x_u8.astype(jnp.float32), w.astype(jnp.float32)
  cases = {
      "native float32": lambda: f32(x_f, w_f),
      "native bf16": lambda: bfn(x_f, w_f),
      "native int8->float32": lambda: i8f(x_i8, w),
      "arith fast auto (uint8 x 6b(L3))": lambda: fast(x_u8, w),
      "arith fast auto (int8 x 6b(L3))": lambda: fast(x_i8, w),
      "arith fast dual-LOD auto (uint8)": lambda: dual(x_u8, w),
      "arith fast f32-exact path (uint8)": lambda: f32path(x_u8, w),
      "arith fast bf16 path (uint8)": lambda: bf16(x_u8, w),
  }
  if not platform.on_gpu():   # XLA:GPU has no int8 -> int32 convolution
    cases["native int8->int32"] = lambda: i8(x_i8, w)
  if reference:
    cases["arith reference (uint8)"] = lambda: ref(x_u8, w)
  # Independent check: an int32 convolution on the CPU backend (exact: |sums| < 2**31), of the
  # first images (the CPU's int32 convolution is slow).
  nchk = min(batch, 4)
  with jax.default_device(_cpu()):
    want = np.asarray(jax.jit(lambda x, y: conv(x, y, preferred_element_type=jnp.int32))(
        jax.device_put(np.asarray(x_u8[:nchk]).astype(np.int32), _cpu()),
        jax.device_put(np.asarray(w).astype(np.int32), _cpu())))
  for name, fn in (("fast", fast), ("f32 path", f32path), ("bf16 path", bf16)):
    try:
      ok = np.array_equal(np.asarray(fn(x_u8, w))[:nchk], want)
    except Exception as e:  # noqa: BLE001 - report a path the backend cannot run
      print(f"[conv] {name}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
      cases.pop({"fast": "arith fast auto (uint8 x 6b(L3))", "f32 path":
                 "arith fast f32-exact path (uint8)", "bf16 path":
                 "arith fast bf16 path (uint8)"}[name], None)
      continue
    assert ok, f"{name} conv is not exact"
  ops = 2.0 * batch * hw * hw * c * c * 9
  return cases, ops, f"conv 3x3 N={batch} {hw}x{hw}x{c}->{c} SAME (NHWC)"


def _kernel_profile(fn: Callable[[], object], directory: str, calls: int = 3, top: int = 25):
  """Device time per kernel of ``calls`` calls of ``fn`` (jax.profiler trace), largest first."""
  import glob
  import shutil
  from jax.profiler import ProfileData
  shutil.rmtree(directory, ignore_errors=True)
  _block(fn())
  with jax.profiler.trace(directory):
    for _ in range(calls):
      _block(fn())
  paths = glob.glob(os.path.join(directory, "**", "*.xplane.pb"), recursive=True)
  if not paths:
    print(f"[profile] no trace written under {directory}")
    return None
  data = ProfileData.from_file(paths[0])
  lines = {}
  for plane in data.planes:
    if not plane.name.startswith("/device:"):
      continue
    for line in plane.lines:
      per = lines.setdefault(f"{plane.name} | {line.name}", {})
      for ev in line.events:
        t, n = per.get(ev.name, (0.0, 0))
        per[ev.name] = (t + ev.duration_ns / calls, n + 1)
  out = {}
  for name, per in lines.items():
    total = sum(t for t, _ in per.values())
    items = sorted(per.items(), key=lambda kv: -kv[1][0])
    out[name] = dict(total_ms=total / 1e6, kernels=[dict(name=k, ms=t / 1e6, count=c // calls)
                                                    for k, (t, c) in items])
    if total <= 0:
      continue
    print(f"\n[profile] {name}: {total / 1e6:.2f} ms per call, {len(per)} distinct events")
    for k, (t, c) in items[:top]:
      print(f"  {t / 1e6:8.3f} ms {100 * t / total:5.1f}% x{c // calls:<4d} {k[:110]}")
  return out


def _batch_convs(hlo: str, batch: int) -> int:
  """Convolutions over the whole batch (not the batch-1 offset terms) plus matmuls (1x1
  convolutions run as matmuls; XLA dots, cuBLAS or oneDNN custom calls) in compiled HLO text."""
  import re
  n = 0
  for line in hlo.splitlines():
    if "convolution(" in line or 'custom_call_target="__cudnn$conv' in line:
      lhs, _, rhs = line.partition(" = ")
      n += bool(re.match(rf"\(?[a-z0-9]+\[{batch},", rhs))
    elif (" dot(" in line or 'custom_call_target="__cublas' in line
          or 'custom_call_target="ebsp_onednn_gemm' in line):
      n += 1
  return n


def _random_bn_scales(params, seed: int = 3):
  """``params`` with every batch-norm ``scale`` drawn from U(0.5, 1.5)."""
  rng = np.random.default_rng(seed)

  def fix(path, v):
    if getattr(path[-1], "key", None) == "scale":
      return jnp.asarray(rng.uniform(0.5, 1.5, v.shape), v.dtype)
    return v
  return jax.tree_util.tree_map_with_path(fix, params)


def network_rows(repeats: int, which=("resnet20", "resnet50"), batch50: int = 8,
                 batch20: int = 64, accumulations=("auto",), profile_dir: Optional[str] = None,
                 hlo_dir: Optional[str] = None, check_cpu=("resnet20",)) -> List[dict]:
  """Integer-mode vs float ResNet-20 / ResNet-50 images/s (``ebsp_jax.quant.to_integer``).

  Cases: float32, bfloat16 (the same model computing in bf16) and the integer mode for each
  ``accumulation`` (native path of the fast method). Integer results of every variant must be
  identical to each other (asserted) and, for the networks named in ``check_cpu``, to the
  integer mode run on the CPU backend (first 8 images): each row's
  ``integer_logits_equal_cpu`` (None where not checked); ``main`` exits 1 after writing its
  JSON when one is False.
  """
  from ebsp_jax import models, quant
  from ebsp_jax.numerics import make_rule
  rows, profiles = [], {}
  for name, shape, batch in (("resnet20", (32, 32, 3), batch20),
                             ("resnet50", (224, 224, 3), batch50)):
    if name not in which:
      continue
    model = models.get_model(name, num_classes=10, **quant.fake_quant_injection(8))
    x = jnp.asarray(np.random.default_rng(2).random((batch,) + shape, np.float32))
    variables = dict(model.init(jax.random.PRNGKey(0), x[:2], train=False))
    # Random batch-norm scales in [0.5, 1.5]: the initial ones (zero for the last BN of each
    # residual block) would make the integer program constant-fold whole blocks away.
    variables["params"] = _random_bn_scales(variables["params"])
    n_conv = sum(1 for p in jax.tree_util.tree_leaves(variables["params"]) if p.ndim == 4)
    for _ in range(2):   # calibrate the activation ranges (random weights: speed only)
      _, upd = model.apply(variables, x[:32], train=True, mutable=["quant_stats", "batch_stats"])
      variables.update(upd)
    fvars = {k: v for k, v in variables.items() if k != "quant_stats"}
    fmodel = models.get_model(name, num_classes=10)
    bmodel = models.get_model(name, num_classes=10, dtype=jnp.bfloat16)
    ffwd = jax.jit(lambda v, x: fmodel.apply(v, x, train=False))
    bfwd = jax.jit(lambda v, x: bmodel.apply(v, x, train=False))
    cases = {"float32": lambda: ffwd(fvars, x), "bfloat16": lambda: bfwd(fvars, x)}
    imodels = {}
    for acc in accumulations:
      imodels[acc] = quant.to_integer(name, variables, weight_rule=make_rule(PATTERN),
                                      activation_bits=8, accumulation=acc)
      cases[f"integer (fast, {acc})"] = (lambda im: lambda: im.apply(x))(imodels[acc])
    outs = {}
    for acc, im in list(imodels.items()):
      try:
        outs[acc] = np.asarray(im.apply(x))
      except Exception as e:  # noqa: BLE001 - a path this backend cannot run: report it
        print(f"[networks] {name} integer accumulation={acc}: {type(e).__name__}: "
              f"{str(e).splitlines()[0][:200]}")
        cases.pop(f"integer (fast, {acc})")
        imodels.pop(acc)
    first = next(iter(outs))
    for acc, o in outs.items():
      assert np.array_equal(o, outs[first]), f"{name}: integer {acc} != integer {first}"
    cpu_equal = None
    if name in check_cpu and jax.default_backend() != "cpu":
      n = min(batch, 8)
      with jax.default_device(_cpu()):
        cpu_out = np.asarray(imodels[first].apply(jax.device_put(np.asarray(x[:n]), _cpu())))
      cpu_equal = bool(np.array_equal(cpu_out, outs[first][:n]))
      print(f"[networks] {name}: integer logits on {jax.default_backend()} == on cpu "
            f"({n} images): {cpu_equal}")
    for acc, im in imodels.items():   # every conv layer must survive compilation
      hlo = im._jitted.lower(im.weights, x).compile().as_text()
      convs = _batch_convs(hlo, batch)
      print(f"[networks] {name} integer ({acc}): {convs} batch-{batch} convolutions compiled "
            f"for {n_conv} conv layers")
      assert convs >= n_conv, f"{name} integer ({acc}): conv layers were compiled away"
      if hlo_dir and acc == first:
        os.makedirs(hlo_dir, exist_ok=True)
        with open(os.path.join(hlo_dir, f"{name}_integer_{acc}.hlo.txt"), "w") as f:
          f.write(hlo)
    samples = interleaved(cases, repeats)
    for k, v in samples.items():
      t, c = statistics.median(v["wall"]), statistics.median(v["cpu"])
      rows.append(dict(network=name, batch=batch, case=k, images_per_s=batch / t,
                       images_per_cpu_s=batch / c, median_ms=t * 1e3, cpu_ms=c * 1e3,
                       samples=len(v["wall"]), integer_logits_equal_cpu=cpu_equal))
    if profile_dir:
      for label, fn in [(f"integer ({acc})", cases[f"integer (fast, {acc})"])
                        for acc in imodels] + [("bfloat16", cases["bfloat16"])]:
        print(f"\n[profile] {name} {label}, batch {batch}")
        profiles[f"{name} {label}"] = _kernel_profile(
            fn, os.path.join(profile_dir, f"{name}_{''.join(c for c in label if c.isalnum())}"))
  if profile_dir:
    with open(os.path.join(profile_dir, "profiles.json"), "w") as f:
      json.dump(profiles, f)
  return rows


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--json", default=None, help="write results to this JSON file")
  ap.add_argument("--repeats", type=int, default=7)
  ap.add_argument("--size", type=int, default=1024)
  ap.add_argument("--conv-batch", type=int, default=8)
  ap.add_argument("--conv-hw", type=int, default=56)
  ap.add_argument("--conv-channels", type=int, default=64)
  ap.add_argument("--reference-every", type=int, default=4,
                  help="time the (slow) reference only every n-th round")
  ap.add_argument("--no-reference", action="store_true")
  ap.add_argument("--networks", action="store_true", help="also time integer-mode ResNets")
  ap.add_argument("--only", choices=["matmul", "conv", "networks"], default=None,
                  help="run one part only")
  ap.add_argument("--network-batch", type=int, default=8, help="ResNet-50 batch")
  ap.add_argument("--resnet20-batch", type=int, default=64)
  ap.add_argument("--networks-which", default="resnet20,resnet50")
  ap.add_argument("--accumulations", default="auto",
                  help="comma-separated integer-mode native paths to time (auto,float32,...)")
  ap.add_argument("--check-cpu", default="resnet20",
                  help="networks whose integer logits are compared with the CPU backend's")
  ap.add_argument("--profile-dir", default=None, help="trace the networks, print top kernels")
  ap.add_argument("--hlo-dir", default=None, help="write the integer networks' optimized HLO")
  args = ap.parse_args(argv)

  device = device_description()
  print(f"device: {device}; jax {jax.__version__}; backend {jax.default_backend()}")
  out = dict(device=device, jax_version=jax.__version__, date=time.strftime("%Y-%m-%d"),
             backend=jax.default_backend(), pattern=str(PATTERN), results=[])
  if jax.default_backend() == "cpu":
    out["onednn"] = dict(available=onednn.available(), reason=onednn.status(),
                         int8_dot_instructions=platform.cpu_has_int8_dot())
  sparse = {"arith reference (uint8)": args.reference_every}
  parts = []
  if args.only in (None, "matmul"):
    parts.append(lambda: matmul_cases(args.size, not args.no_reference))
  if args.only in (None, "conv"):
    parts.append(lambda: conv_cases(args.conv_batch, args.conv_hw, args.conv_channels,
                                    not args.no_reference))
  for make in parts:
    cases, ops, title = make()
    rows = _rows(interleaved(cases, args.repeats, sparse), ops, "native float32")
    print(f"\n{title}  ({ops / 1e9:.2f} G int ops per call)")
    print(f"{'case':38s} {'wall ms':>9s} {'cpu ms':>9s} {'GOPS':>7s} {'x f32':>6s} "
          f"{'x f32 cpu':>9s} {'n':>3s}")
    for r in rows:
      print(f"{r['case']:38s} {r['median_ms']:9.2f} {r['cpu_ms']:9.2f} {r['gops']:7.1f} "
            f"{r['vs_float32']:6.2f} {r['vs_float32_cpu']:9.2f} {r['samples']:3d}")
    out["results"].append(dict(benchmark=title, ops=ops, rows=rows))
  if args.networks or args.only == "networks":
    rows = network_rows(max(3, args.repeats // 2), which=tuple(args.networks_which.split(",")),
                        batch50=args.network_batch, batch20=args.resnet20_batch,
                        accumulations=tuple(args.accumulations.split(",")),
                        profile_dir=args.profile_dir, hlo_dir=args.hlo_dir,
                        check_cpu=tuple(args.check_cpu.split(",")))
    for r in rows:
      print(f"{r['network']:10s} batch {r['batch']:3d} {r['case']:24s} "
            f"{r['images_per_s']:10.1f} img/s (wall) {r['images_per_cpu_s']:10.1f} img/cpu-s")
    out["networks"] = rows
  else:
    print("\n[networks] not run (pass --networks; needs ebsp_jax.quant.to_integer)")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=2)
    print(f"wrote {args.json}")
  differ = sorted({r["network"] for r in out.get("networks", [])
                   if r.get("integer_logits_equal_cpu") is False})
  if differ:
    print(f"FAILED: integer logits differ between {jax.default_backend()} and cpu: "
          f"{', '.join(differ)}")
    sys.exit(1)


if __name__ == "__main__":
  main()
