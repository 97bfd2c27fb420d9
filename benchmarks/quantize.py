"""Cost of the analytic pattern projection against uniform fake-quant and an argmin projection.

  python -m benchmarks.quantize [--size=16777216] [--output=benchmarks/quantize.json]

All three run on the same float32 tensor, jitted, timed interleaved; ratios are printed.
Target (issue 2): `project` within 1.1x of the uniform fake-quant on CPU.
"""

from __future__ import annotations

from absl import app, flags
import jax
import jax.numpy as jnp

from benchmarks.common import device_description, time_interleaved, write_json
from ebsp_jax import BitPattern, project

_SIZE = flags.DEFINE_integer("size", 16 * 1024 * 1024, "Elements of the float32 tensor.")
_OUTPUT = flags.DEFINE_string("output", "benchmarks/quantize.json", "JSON output path.")
_REPEATS = flags.DEFINE_integer("repeats", 7, "Interleaved repeats (median is reported).")


def main(argv):
  del argv
  pattern = BitPattern(6, 3)
  x = jax.random.normal(jax.random.key(0), (_SIZE.value,), jnp.float32)
  scale = jnp.float32(0.1)
  qmax = float(pattern.max_level)
  levels = jnp.asarray(pattern.levels, jnp.float32)

  ebsp = jax.jit(lambda x, s: project(x, pattern, s))
  unif = jax.jit(lambda x, s: jnp.clip(jnp.round(x / s), -qmax, qmax) * s)

  @jax.jit
  def argmin(x, s):  # the naive way: nearest of all levels, chunked to bound memory
    def chunk(xc):
      i = jnp.argmin(jnp.abs(xc[:, None] / s - levels[None, :]), axis=1)
      return levels[i] * s
    return jax.lax.map(chunk, x.reshape(-1, 4096)).reshape(x.shape)

  fns = {"ebsp_project": lambda: ebsp(x, scale).block_until_ready(),
         "uniform_fake_quant": lambda: unif(x, scale).block_until_ready(),
         "argmin_over_levels": lambda: argmin(x, scale).block_until_ready()}
  wall = time_interleaved(fns, repeats=_REPEATS.value, inner=1, clock="wall")
  cpu = time_interleaved(fns, repeats=_REPEATS.value, inner=1, clock="cpu")
  print(f"{device_description()}  |  {_SIZE.value} float32 elements, pattern {pattern}")
  print(f"{'method':<22}{'wall ms':>10}{'ratio':>8}{'cpu ms':>10}{'ratio':>8}")
  for k in fns:
    print(f"{k:<22}{wall[k] * 1e3:>10.2f}{wall[k] / wall['uniform_fake_quant']:>7.2f}x"
          f"{cpu[k] * 1e3:>10.2f}{cpu[k] / cpu['uniform_fake_quant']:>7.2f}x")
  write_json(_OUTPUT.value, {
      "benchmark": "quantize", "size": _SIZE.value, "pattern": str(pattern),
      "wall_seconds": wall, "cpu_seconds": cpu,
      "wall_ratio_vs_uniform": {k: v / wall["uniform_fake_quant"] for k, v in wall.items()},
      "cpu_ratio_vs_uniform": {k: v / cpu["uniform_fake_quant"] for k, v in cpu.items()}})


if __name__ == "__main__":
  app.run(main)
