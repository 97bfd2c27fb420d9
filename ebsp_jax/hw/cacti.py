"""Run CACTI 7 (the binary shipped inside ``zigzag-dse``) for SRAM energy, leakage and area.

The hardware model never calls CACTI at run time: :data:`ebsp_jax.hw.tech.CACTI_45NM` is a frozen
table produced by :func:`sram_table` (``python -m ebsp_jax.hw.cacti`` prints it) so that reports
are reproducible without the binary. ``cacti_test.py`` re-runs CACTI for a few points (each run
takes ~0.1 s) and checks that the frozen table still matches.

Configuration (documented so the table can be regenerated anywhere): CACTI 7.0 as vendored by
zigzag-dse 3.9.1 (``zigzag/cacti/cacti_master/cacti``), ZigZag's baseline ``cache.cfg`` text
(``CactiConfig.baseline_config``: UCA, ED^2 optimisation, "Global_30" wires, semi-global wires
inside/outside mats, conservative interconnect projection, 360 K header but overridden to 300 K
here), a plain ``"ram"`` with 1 read-write port, 1 bank, block size = bus width / 8 bytes,
technology 0.045 um, cell and peripheral device type as requested (``itrs-hp`` / ``itrs-lop`` /
``itrs-lstp``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import tempfile
from typing import Iterable


@dataclasses.dataclass(frozen=True)
class CactiResult:
  """One CACTI run.

  Attributes:
    size_bytes: capacity in bytes.
    width_bits: read/write port width in bits (one access moves this many bits).
    device: ITRS device type of cells and periphery.
    read_pj: dynamic read energy per access, pJ.
    write_pj: dynamic write energy per access, pJ.
    leakage_mw: leakage power of the bank, mW (subthreshold + gate).
    area_mm2: total area (height x width), mm^2.
  """

  size_bytes: int
  width_bits: int
  device: str
  read_pj: float
  write_pj: float
  leakage_mw: float
  area_mm2: float


class CactiUnavailable(RuntimeError):
  """The CACTI binary (from zigzag-dse) is not installed or failed for this configuration."""


def cacti_binary() -> str | None:
  """Path of the CACTI executable shipped by zigzag-dse, or None when not installed."""
  try:
    import zigzag  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  path = os.path.join(os.path.dirname(zigzag.__file__), "cacti", "cacti_master", "cacti")
  return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


def _baseline_config(device: str) -> str:
  from zigzag.hardware.architecture.get_cacti_cost import CactiConfig  # pylint: disable=import-outside-toplevel
  base = "".join(CactiConfig().baseline_config)
  base = base.replace('-Data array cell type - "itrs-hp"', f'-Data array cell type - "{device}"')
  base = base.replace('-Data array peripheral type - "itrs-hp"',
                      f'-Data array peripheral type - "{device}"')
  return base


_FLOAT = r"([-+0-9.eE]+|inf|nan)"


def run_cacti(size_bytes: int, width_bits: int = 64, device: str = "itrs-hp",
              technology_um: float = 0.045) -> CactiResult:
  """Runs CACTI once for a single-bank, single-port SRAM.

  Args:
    size_bytes: capacity in bytes (CACTI needs >= 256 B at 64-bit width).
    width_bits: access width in bits (multiple of 8).
    device: ``'itrs-hp'``, ``'itrs-lop'`` or ``'itrs-lstp'``.
    technology_um: feature size in micrometres (0.045 = 45 nm).

  Returns:
    The parsed :class:`CactiResult` (energies in pJ, leakage in mW, area in mm^2).

  Raises:
    CactiUnavailable: no binary, or CACTI found no valid organisation.
  """
  binary = cacti_binary()
  if binary is None:
    raise CactiUnavailable("zigzag-dse (which ships the CACTI binary) is not installed")
  if device not in ("itrs-hp", "itrs-lop", "itrs-lstp"):
    raise ValueError(f"device must be itrs-hp, itrs-lop or itrs-lstp; got {device!r}")
  user = [
      f"-size (bytes) {int(size_bytes)}\n",
      f"-block size (bytes) {max(1, width_bits // 8)}\n",
      f"-output/input bus width {int(width_bits)}\n",
      "-associativity 1\n", "-read-write port 1\n", "-exclusive read port 0\n",
      "-exclusive write port 0\n", "-single ended read ports 0\n", "-UCA bank count 1\n",
      f"-technology (u) {technology_um}\n", '-cache type "ram"\n',
      "-operating temperature (K) 300\n",
  ]
  with tempfile.TemporaryDirectory() as tmp:
    # CACTI reads its tech files relative to its own directory: run it there, config in tmp.
    cfg = os.path.join(tmp, "sram.cfg")
    with open(cfg, "w", encoding="utf-8") as f:
      f.write(_baseline_config(device) + "".join(user))
    proc = subprocess.run([binary, "-infile", cfg], cwd=os.path.dirname(binary),
                          capture_output=True, text=True, timeout=60, check=False)
  out = proc.stdout

  def grab(pattern: str) -> float:
    m = re.search(pattern, out)
    if m is None:
      raise CactiUnavailable(f"CACTI gave no result for size={size_bytes} B, "
                             f"width={width_bits} b, {device}")
    return float(m.group(1))

  read = grab(r"Total dynamic read energy per access \(nJ\): " + _FLOAT)
  write = grab(r"Total dynamic write energy per access \(nJ\): " + _FLOAT)
  leak = grab(r"Total leakage power of a bank \(mW\): " + _FLOAT)
  gate = grab(r"Total gate leakage power of a bank \(mW\): " + _FLOAT)
  m = re.search(r"Cache height x width \(mm\): " + _FLOAT + " x " + _FLOAT, out)
  if m is None:
    raise CactiUnavailable("CACTI output has no area line")
  area = float(m.group(1)) * float(m.group(2))
  return CactiResult(int(size_bytes), int(width_bits), device, read * 1e3, write * 1e3,
                     leak + gate, area)


#: Capacities of the frozen table, bytes (256 B .. 2 MiB).
TABLE_SIZES = tuple(256 << i for i in range(14))


def sram_table(sizes: Iterable[int] = TABLE_SIZES, width_bits: int = 64,
               devices: Iterable[str] = ("itrs-hp", "itrs-lop")) -> list[CactiResult]:
  """Runs CACTI over ``sizes`` x ``devices`` at one width (the input of ``tech.CACTI_45NM``)."""
  return [run_cacti(s, width_bits, d) for d in devices for s in sizes]


def main() -> None:
  """Prints the frozen-table source text for ``tech.py``."""
  for r in sram_table():
    print(f"    ({r.size_bytes}, {r.width_bits}, {r.device!r}, {r.read_pj:.4g}, {r.write_pj:.4g}, "
          f"{r.leakage_mw:.4g}, {r.area_mm2:.4g}),")


if __name__ == "__main__":
  main()
