"""Is a Pallas/Triton int8 GEMM with the requantizer fused into its epilogue faster than XLA?

Issue 3: integer ResNet-50 spends ~9.7 ms per batch of 256 in XLA's elementwise requantization
fusions after its convs/matmuls (``benchmarks/GPU_NOTES.md``). This benchmark answers, on
ResNet-50's 1x1-conv GEMM shapes at batch 256 (``M = 256*H*W``, ``K = Cin``, ``N = Cout``) and
8192^3, whether :func:`ebsp_jax.arith.pallas_gemm.int8_matmul_requant` beats XLA. Four variants
per shape, timed interleaved (round robin; shared machines are noisy):

  (a) ``xla_dot``        XLA ``dot_general(int8, int8) -> int32`` (cuBLASLt on NVIDIA)
  (b) ``xla_requant``    (a) + ``requant.apply_folded`` epilogue -> int8, one jitted function
  (c) ``pallas_dot``     Pallas/Triton ``int8_matmul`` -> int32 (best config of (d))
  (d) ``pallas_requant`` Pallas/Triton ``int8_matmul_requant`` -> int8 (fused epilogue)

(c)/(d) are checked bit-exact against (a)/(b) on the device for every shape (and (a) against a
NumPy int64 product on a corner). (d) is autotuned over ``--configs`` block configurations
(compile + a few timed calls each); the best is then timed against the others. Per-column
requant constants come from ``requant.fold_requantizer`` (narrow, int32 multiplier: the common
case), embedded as constants, as the integer model does.

Reports ms (median per call), TOPS (``2*M*N*K`` / time) and the speedups (d) vs (b) and (d)
vs (a); prints a table; ``--json PATH`` writes everything (incl. autotune tables, the XLA
kernels that (b) compiled to, errors), rewritten after every shape so a cut-off run still
leaves results. The run is bounded: ``--budget-s`` (default 90 s of wall time after start-up)
cuts autotuning to 2 configs past 45 % and 1 past 70 % of it and skips the remaining shapes
past it (one shape can still overrun by its compile + timing); progress lines carry elapsed
seconds. Triton compiles dominate (~4 configs + 1 per shape).

Usage (GPU; ~1.5-2 min, the hard ``timeout`` leaves room for a slow Triton)::

    export JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
    timeout 280 python3 -m benchmarks.pallas_epilogue --json $OUT/pallas_epilogue.json \
      2>&1 | tee $OUT/pallas_epilogue.log

Before the shapes it runs three small exactness checks on the device (padding with an odd
shape, ``[N, K]`` weights, int64 multipliers with int32 output, ``K = MAX_EXACT_K``).

CPU smoke test (Pallas interpreter, tiny shapes)::

    python -m benchmarks.pallas_epilogue --interpret --json /tmp/pallas_epilogue_cpu.json
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import sys
import time
import traceback
from typing import Callable, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import device_description, time_interleaved, write_json  # noqa: E402
from ebsp_jax.arith import pallas_gemm as pg  # noqa: E402
from ebsp_jax.arith import requant  # noqa: E402

# (name, M, K, N): ResNet-50 1x1 convs at batch 256 as GEMMs, and the square reference.
GPU_SHAPES: List[Tuple[str, int, int, int]] = [
    ("s2_56x56_64to256", 256 * 56 * 56, 64, 256),
    ("s2_56x56_256to64", 256 * 56 * 56, 256, 64),
    ("s3_28x28_512to128", 256 * 28 * 28, 512, 128),
    ("s4_14x14_1024to256", 256 * 14 * 14, 1024, 256),
    ("s5_7x7_2048to512", 256 * 7 * 7, 2048, 512),
    ("s5_7x7_512to2048", 256 * 7 * 7, 512, 2048),
    ("square_8192", 8192, 8192, 8192),
]
# Interpreter smoke test: same structure, tiny (one not a block multiple).
CPU_SHAPES: List[Tuple[str, int, int, int]] = [
    ("tiny_64to256", 2 * 8 * 8, 64, 256),
    ("tiny_256to64", 2 * 8 * 8, 256, 64),
    ("tiny_odd", 100, 72, 40),
]

# (block_m, block_n, block_k, num_warps, num_stages, group_m, b_transposed), in order of
# preference (the first --configs are tried); clamped to the shape (powers of two not above
# M, N, K) and deduplicated. b_transposed: weights stored [N, K] (K-major, what Hopper's 8-bit
# wgmma reads); the second config is the first with [K, N] weights, to see the layout's cost.
GPU_CONFIGS = [
    (128, 128, 128, 8, 3, 8, True),
    (128, 128, 128, 8, 3, 8, False),
    (128, 256, 128, 8, 3, 8, True),
    (256, 128, 64, 8, 3, 8, True),
    (64, 128, 128, 4, 4, 8, True),
]
CPU_CONFIGS = [
    (32, 32, 32, 4, 3, 8, True),
    (16, 64, 64, 4, 3, 1, False),
]

T0 = time.perf_counter()


def log(msg: str) -> None:
  print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", flush=True)


def _pow2_floor(x: int) -> int:
  return 1 << (max(1, x).bit_length() - 1)


def shape_configs(m: int, k: int, n: int, templates, limit: int) -> List[Dict[str, int]]:
  out, seen = [], set()
  for bm, bn, bk, warps, stages, group, b_t in templates:
    cfg = dict(block_m=max(16, min(bm, _pow2_floor(m))), block_n=max(16, min(bn, _pow2_floor(n))),
               block_k=max(32, min(bk, _pow2_floor(k))), num_warps=warps, num_stages=stages,
               group_m=group, b_transposed=b_t)
    key = tuple(cfg.values())
    if key not in seen:
      seen.add(key)
      out.append(cfg)
  return out[:limit]


def config_tag(cfg: Dict[str, int]) -> str:
  return ("bm{block_m}_bn{block_n}_bk{block_k}_w{num_warps}_s{num_stages}_g{group_m}".format(**cfg)
          + ("_bNK" if cfg["b_transposed"] else "_bKN"))


def random_int8(key, shape) -> jax.Array:
  """Uniform int8 over the full range, generated on the device."""
  return lax.bitcast_convert_type(jax.random.bits(key, shape, jnp.uint8), jnp.int8)


def folded_requantizer(n: int, k: int, seed: int) -> requant.FoldedRequantizer:
  """Per-column constants like the model's: bias, ``M * 2**-n`` mapping typical sums to ~64."""
  rng = np.random.default_rng(seed)
  std = math.sqrt(k) * 73.9 * 73.9                      # std of a sum of k uniform int8 products
  real = np.exp2(rng.uniform(-2.0, 2.0, size=n)) * 64.0 / std
  mult, shift = requant.quantize_multiplier(real)
  bias = rng.integers(-(1 << 15), 1 << 15, size=n)
  return requant.fold_requantizer(0, bias, mult, shift, -128, 127)


def timed(fn: Callable, args, inner: int) -> Callable[[], None]:
  """A thunk that enqueues ``inner`` calls and blocks on the last (dispatch overlaps)."""

  def run():
    out = None
    for _ in range(inner):
      out = fn(*args)
    jax.block_until_ready(out)
  return run


def quick_time(thunk: Callable[[], None], inner: int, repeats: int = 3) -> float:
  """Median seconds per call (the thunk runs ``inner`` calls); first call is warm-up."""
  thunk()
  samples = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    thunk()
    samples.append((time.perf_counter() - t0) / inner)
  return statistics.median(samples)


def xla_kernels(jitted, *args) -> Dict[str, object]:
  """What XLA compiled ``jitted`` to: custom-call targets and the number of fusions."""
  try:
    text = jitted.lower(*args).compile().as_text()
  except Exception as e:  # pragma: no cover - diagnostics only
    return {"error": repr(e)[:300]}
  targets = sorted(set(re.findall(r'custom_call_target="([^"]+)"', text)))
  return {"custom_calls": targets, "fusions": len(re.findall(r"^\s*\S+ = \S+ fusion\(", text,
                                                               re.M)),
          "triton_fusions": len(re.findall(r'"kind":"__triton', text))}


def bench_shape(name: str, m: int, k: int, n: int, configs: List[Dict[str, int]],
                interpret: bool, repeats: int, seed: int) -> Dict[str, object]:
  ops = 2 * m * n * k
  res: Dict[str, object] = dict(name=name, M=m, K=k, N=n, ops=ops, errors={})
  ka, kb = jax.random.split(jax.random.PRNGKey(seed))
  a = random_int8(ka, (m, k))
  b = random_int8(kb, (k, n))
  b_t = jax.jit(lambda x: x.T)(b)                      # [N, K] weights (not timed)
  f = folded_requantizer(n, k, seed)
  jax.block_until_ready((a, b, b_t))

  xla_dot = jax.jit(pg.xla_int8_matmul)
  xla_req = jax.jit(lambda x, y: pg.xla_int8_matmul_requant(x, y, f))
  same = jax.jit(lambda x, y: jnp.array_equal(x, y))

  t = time.perf_counter()
  ref_dot = jax.block_until_ready(xla_dot(a, b))
  ref_req = jax.block_until_ready(xla_req(a, b))
  log(f"{name}: XLA compiled + ran in {time.perf_counter() - t:.1f}s")
  res["xla_requant_kernels"] = xla_kernels(xla_req, a, b)
  # Corner of (a) against NumPy int64 (host).
  an = np.asarray(a[:8]).astype(np.int64)
  bn_ = np.asarray(b[:, :64]).astype(np.int64)
  res["xla_dot_corner_exact"] = bool(np.array_equal(np.asarray(ref_dot[:8, :64]), an @ bn_))
  # Sanity of the requant constants: outputs span the int8 range (not all clamped / zero).
  hist = np.asarray(ref_req[:256]).astype(np.int64)
  res["requant_out_stats"] = dict(frac_clamped=float(np.mean((hist == -128) | (hist == 127))),
                                  frac_zero=float(np.mean(hist == 0)))

  # Calls per timed sample: ~2 ms of work per sample at ~500 TOPS, at least 1, at most 50 and
  # at most ~16 GB of queued int32 outputs.
  inner = 1 if interpret else int(min(50, 16e9 // (4 * m * n),
                                      max(1, math.ceil(2e-3 / (ops / 5e14 + 5e-6)))))
  inner = max(1, inner)
  res["inner_calls"] = inner

  # Autotune (d).
  tune = []
  best: Optional[Tuple[float, Dict[str, int], Callable, jax.Array]] = None
  for cfg in configs:
    tag = config_tag(cfg)
    bb = b_t if cfg["b_transposed"] else b
    t = time.perf_counter()
    try:
      fn = jax.jit(lambda x, y, cfg=cfg: pg.int8_matmul_folded(x, y, f, interpret=interpret,
                                                               **cfg))
      out = jax.block_until_ready(fn(a, bb))
      exact = bool(same(out, ref_req))
      compile_s = time.perf_counter() - t
      sec = quick_time(timed(fn, (a, bb), inner), inner)
      tune.append(dict(config=tag, ms=sec * 1e3, tops=ops / sec / 1e12, exact=exact,
                       compile_s=compile_s))
      log(f"{name}: (d) {tag}: {sec * 1e3:.3f} ms, exact={exact}, compile {compile_s:.1f}s")
      if exact and (best is None or sec < best[0]):
        best = (sec, cfg, fn, bb)
    except Exception as e:
      msg = f"{type(e).__name__}: {e}"
      tune.append(dict(config=tag, error=msg[:2000]))
      log(f"{name}: (d) {tag} FAILED: {msg[:300]}")
      if not interpret:
        traceback.print_exc(limit=3)
  res["autotune"] = tune

  fns: Dict[str, Callable[[], None]] = {
      "xla_dot": timed(xla_dot, (a, b), inner),
      "xla_requant": timed(xla_req, (a, b), inner),
  }
  if best is not None:
    _, cfg, fused, bb = best
    res["best_config"] = cfg
    fns["pallas_requant"] = timed(fused, (a, bb), inner)
    try:
      plain = jax.jit(lambda x, y: pg.int8_matmul(x, y, interpret=interpret, **cfg))
      out = jax.block_until_ready(plain(a, bb))
      res["pallas_dot_exact"] = bool(same(out, ref_dot))
      if res["pallas_dot_exact"]:
        fns["pallas_dot"] = timed(plain, (a, bb), inner)
      else:
        res["errors"]["pallas_dot"] = "result differs from XLA's int32 dot"
    except Exception as e:
      res["errors"]["pallas_dot"] = f"{type(e).__name__}: {e}"[:2000]
      log(f"{name}: (c) FAILED: {res['errors']['pallas_dot'][:300]}")
  ran = [r for r in tune if "exact" in r]
  res["pallas_requant_exact"] = bool(ran) and all(r["exact"] for r in ran)

  sec = time_interleaved(fns, repeats=repeats, inner=1)
  res["ms"] = {kk: v / inner * 1e3 for kk, v in sec.items()}
  res["tops"] = {kk: ops / (v / inner) / 1e12 for kk, v in sec.items()}
  ms = res["ms"]
  if "pallas_requant" in ms:
    res["speedup_d_vs_b"] = ms["xla_requant"] / ms["pallas_requant"]
    res["speedup_d_vs_a"] = ms["xla_dot"] / ms["pallas_requant"]
  if "pallas_dot" in ms:
    res["speedup_c_vs_a"] = ms["xla_dot"] / ms["pallas_dot"]
  res["epilogue_ms_xla"] = ms["xla_requant"] - ms["xla_dot"]
  log(f"{name}: " + ", ".join(f"{kk} {v:.3f} ms" for kk, v in ms.items())
      + (f"; (d) vs (b) {res['speedup_d_vs_b']:.2f}x" if "speedup_d_vs_b" in res else ""))
  return res


def exactness_checks(interpret: bool) -> List[Dict[str, object]]:
  """Corner cases on the device vs NumPy int64 (host): padding, both B layouts, int64 (wide)
  multipliers with int32 output, the largest exact K. A few seconds (3 small compiles)."""
  rng = np.random.default_rng(1)
  m, k, n = (1000, 300, 200) if not interpret else (70, 100, 40)
  blocks = dict(block_m=64, block_n=64, block_k=64) if not interpret else dict(
      block_m=32, block_n=32, block_k=32)
  a = rng.integers(-128, 128, size=(m, k)).astype(np.int8)
  b = rng.integers(-128, 128, size=(k, n)).astype(np.int8)
  a[:, :7] = -128
  b[:7, :] = -128
  pre = a.astype(np.int64) @ b.astype(np.int64)
  out = []

  def ref(f):
    p = pre * np.asarray(f.multiplier, np.int64) + np.asarray(f.offset, np.int64)
    return np.clip(np.right_shift(p, np.asarray(f.shift, np.int64)), f.lo, f.hi)

  narrow = folded_requantizer(n, k, 5)
  # Wide: acc_shift 4 and some multipliers >= 2**27 make shift < acc_shift (int64 multiplier).
  mult, shift = requant.quantize_multiplier(np.where(np.arange(n) % 3 == 0, 2.0 ** 28,
                                                     2.0 ** -20 * (1 + np.arange(n) / n)))
  wide = requant.fold_requantizer(4, rng.integers(-1000, 1000, size=n), mult, shift,
                                  -(1 << 31), (1 << 31) - 1)
  assert wide.wide
  cases = [
      ("narrow_odd_shape_bNK", narrow, True, jnp.int8),
      ("wide_int64_mult_int32_out_bKN", wide, False, jnp.int32),
  ]
  for name, f, b_t, out_dtype in cases:
    t = time.perf_counter()
    try:
      fn = jax.jit(lambda x, y, f=f, b_t=b_t, od=out_dtype: pg.int8_matmul_folded(
          x, y, f, out_dtype=od, b_transposed=b_t, interpret=interpret, **blocks))
      got = np.asarray(fn(jnp.asarray(a), jnp.asarray(np.ascontiguousarray(b.T) if b_t else b)))
      ok = bool(np.array_equal(got.astype(np.int64), ref(f)))
      out.append(dict(check=name, exact=ok, seconds=time.perf_counter() - t))
    except Exception as e:
      out.append(dict(check=name, error=f"{type(e).__name__}: {e}"[:2000]))
    log(f"check {name}: {out[-1].get('exact', out[-1].get('error', '')[:300])}")
  # Largest exact K: (-128) * (-128) * MAX_EXACT_K = 2147467264.
  try:
    kk = pg.MAX_EXACT_K
    x = jnp.full((16, kk), -128, jnp.int8)
    y = jnp.full((kk, 16), -128, jnp.int8)
    got = np.asarray(pg.int8_matmul(x, y, block_m=16, block_n=16, block_k=1024,
                                    interpret=interpret))
    out.append(dict(check="max_exact_k", exact=bool(np.all(got == kk * (1 << 14)))))
  except Exception as e:
    out.append(dict(check="max_exact_k", error=f"{type(e).__name__}: {e}"[:2000]))
  log(f"check max_exact_k: {out[-1].get('exact', out[-1].get('error', '')[:300])}")
  return out


def print_table(rows: List[Dict[str, object]]) -> None:
  cols = ["xla_dot", "xla_requant", "pallas_dot", "pallas_requant"]
  head = (f"{'shape':22s} {'M':>7s} {'K':>5s} {'N':>5s} | "
          + " | ".join(f"{c:>14s}" for c in cols) + " | d/b speedup | exact c,d | best config")
  print(head)
  print("-" * len(head))
  for r in rows:
    if "ms" not in r:
      print(f"{r['name']:22s} skipped: {r.get('skipped', r.get('errors'))}")
      continue
    cells = []
    for c in cols:
      if c in r["ms"]:
        cells.append(f"{r['ms'][c]:7.3f}ms {r['tops'][c]:4.0f}T")
      else:
        cells.append(f"{'-':>14s}")
    sp = f"{r['speedup_d_vs_b']:.2f}x" if "speedup_d_vs_b" in r else "-"
    cfg = r.get("best_config")
    cfg_s = config_tag(cfg) if cfg else "-"
    print(f"{r['name']:22s} {r['M']:7d} {r['K']:5d} {r['N']:5d} | " + " | ".join(cells)
          + f" | {sp:>11s} | {str(r.get('pallas_dot_exact'))[0]},"
          + f"{str(r['pallas_requant_exact'])[0]}"
          + f"       | {cfg_s}")
  sys.stdout.flush()


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--json", default=None, help="write results here")
  p.add_argument("--interpret", action="store_true",
                 help="Pallas interpreter at tiny sizes (CPU smoke test)")
  p.add_argument("--only", default=None, help="comma-separated shape names")
  p.add_argument("--configs", type=int, default=4, help="block configs tried per shape")
  p.add_argument("--repeats", type=int, default=7, help="interleaved timing rounds")
  p.add_argument("--budget-s", type=float, default=90.0,
                 help="soft wall-time bound (s): fewer configs past 45%% / 70%% of it, "
                      "remaining shapes skipped past it")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--no-checks", action="store_true",
                 help="skip the corner-case exactness checks run first (~3 compiles)")
  args = p.parse_args(argv)

  platform = jax.devices()[0].platform
  log(f"jax {jax.__version__}, {device_description()}")
  if platform != "gpu" and not args.interpret:
    print("pallas_epilogue: no GPU here; this benchmark times Triton kernels. "
          "Use --interpret for a CPU smoke test at tiny sizes.", file=sys.stderr)
    return 2
  shapes = CPU_SHAPES if args.interpret else GPU_SHAPES
  templates = CPU_CONFIGS if args.interpret else GPU_CONFIGS
  if args.only:
    wanted = set(args.only.split(","))
    shapes = [s for s in shapes if s[0] in wanted]

  checks = exactness_checks(args.interpret) if not args.no_checks else []
  rows: List[Dict[str, object]] = []
  start = time.perf_counter()
  for i, (name, m, k, n) in enumerate(shapes):
    elapsed = time.perf_counter() - start
    if elapsed > args.budget_s:
      log(f"{name}: skipped (budget {args.budget_s:.0f}s spent)")
      rows.append(dict(name=name, M=m, K=k, N=n, skipped="time budget"))
      continue
    # Autotune less as the budget goes: all configs, then 2, then 1.
    limit = (args.configs if elapsed < 0.45 * args.budget_s
             else min(2, args.configs) if elapsed < 0.7 * args.budget_s else 1)
    configs = shape_configs(m, k, n, templates, limit)
    log(f"[{i + 1}/{len(shapes)}] {name}: M={m} K={k} N={n}, {len(configs)} configs")
    try:
      rows.append(bench_shape(name, m, k, n, configs, args.interpret, args.repeats,
                              args.seed + i))
    except Exception as e:
      traceback.print_exc(limit=5)
      rows.append(dict(name=name, M=m, K=k, N=n,
                       errors={"shape": f"{type(e).__name__}: {e}"[:2000]}))
    if args.json:  # write as we go: a cut-off run still leaves results
      write_json(args.json, dict(benchmark="pallas_epilogue", interpret=args.interpret,
                                 checks=checks, rows=rows, complete=False))

  print_table(rows)
  done = [r for r in rows if "speedup_d_vs_b" in r]
  summary = {}
  if done:
    summary = dict(
        geomean_speedup_d_vs_b=float(np.exp(np.mean([np.log(r["speedup_d_vs_b"]) for r in done]))),
        resnet_sum_ms={kk: float(sum(r["ms"].get(kk, float("nan")) for r in done
                                     if not r["name"].startswith("square")))
                       for kk in ("xla_dot", "xla_requant", "pallas_dot", "pallas_requant")},
        all_exact=all(r.get("pallas_requant_exact") and r.get("pallas_dot_exact", True)
                      for r in done) and all(c.get("exact") for c in checks))
    log(f"summary: {summary}")
  if args.json:
    write_json(args.json, dict(benchmark="pallas_epilogue", interpret=args.interpret,
                               checks=checks, rows=rows, summary=summary, complete=True,
                               wall_s=time.perf_counter() - T0))
    log(f"wrote {args.json}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
