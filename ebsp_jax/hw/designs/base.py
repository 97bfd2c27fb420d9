"""The design registry's types: number formats, build options and one entry per design.

Adding an accelerator touches one place: a module in :mod:`ebsp_jax.hw.designs` that builds
its PE (from :mod:`ebsp_jax.hw.pe` parts), lists its local memories and spatial unrollings and
calls :func:`register` with a :class:`Design`. :mod:`ebsp_jax.hw.arch` builds any registered
design at equal area (or at the paper's PE count), and each design may add its own papers'
settings (:attr:`Design.settings`), which the validation (``experiments/validate_baselines.py``)
and ``experiments/hardware.py --setting=own`` use.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from ebsp_jax.hw.pe import PEModel
from ebsp_jax.hw.spec import Accelerator, ConfigError, MemLevel
from ebsp_jax.hw.tech import TechParams

Spatial = tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]


@dataclasses.dataclass(frozen=True)
class Formats:
  """Number formats of one design (EBSP may run other per-layer formats on it: see
  :func:`ebsp_jax.hw.designs.ebsp.layer_view`).

  Attributes:
    pattern_bits, pattern_length, weight_format: EBSP's weight pattern and storage.
    pattern_max_shift: EBSP's shifter range when it is built for several per-layer formats
      (:func:`ebsp_jax.hw.pe.ebsp_support`); ``None``: the pattern's own.
    activation_bits: EBSP's activation width.
    acc_bits: accumulator width of the 4/6/8-bit designs (Eyeriss keeps its 16-bit psums).
    outlier_fraction: OLAccel's outlier fraction.
    bitfusion_bits: Bit Fusion's weight and activation width.
  """

  pattern_bits: int = 6
  pattern_length: int = 3
  activation_bits: int = 8
  acc_bits: int = 32
  weight_format: str = "raw"
  outlier_fraction: float = 0.03
  bitfusion_bits: int = 4
  pattern_max_shift: int | None = None


@dataclasses.dataclass(frozen=True)
class Design:
  """One registered accelerator.

  Attributes:
    name: registry key (``'eyeriss'``).
    title: human-readable name with its paper (``'Eyeriss (JSSC 2017)'``).
    source: key of :data:`ebsp_jax.hw.tech.SOURCES`.
    make_pe: ``Formats -> PEModel`` (may raise ``ValueError``/``ConfigError`` for bad formats).
    local_levels: ``(pe, tech, formats, options) -> [MemLevel]``: the levels below the global
      buffer (registers, scratchpads, LUTs, subarrays).
    spatial: candidate spatial unrollings (see :class:`ebsp_jax.hw.spec.Accelerator`).
    accumulated_product: ``Formats -> (w, a)`` bits of the products added in ``acc_bits``, or
      ``None`` if the design keeps its own psum width.
    label: ``(formats, pe) -> str`` for tables (the EBSP paper's bit-width column by default).
    d1_fixed: array rows fixed by the design (WAX's 32-MAC tiles), else ``None``.
    cycle_factor: ``Formats -> float`` compute-cycle overhead (OLAccel's outliers).
    act_sparsity: use of zero activations (:data:`ebsp_jax.hw.spec.ACT_SPARSITY_MODES`).
    paper_pes: the EBSP paper's PE count at 0.32 mm^2, if the design is in its table.
    paper_bits: the EBSP paper's bit-width column, if the design is in its table.
    settings: ``{setting: builder(**kwargs) -> Accelerator}``: the design in its own (or a
      comparison) paper's configuration; the first is the design's own paper.
    in_paper_table: whether the EBSP paper compares against it (the default design set).
    dram_codec: DRAM compression of activations (:data:`ebsp_jax.hw.spec.DRAM_CODECS`).
    mapping_generator: the design's own schedule generator (registered in
      :mod:`ebsp_jax.hw.spec`), replacing the generic mapping search, or ``''``.
  """

  name: str
  title: str
  source: str
  make_pe: Callable[[Formats], PEModel]
  local_levels: Callable[[PEModel, TechParams, Formats, Mapping[str, Any]], list[MemLevel]]
  spatial: Spatial
  accumulated_product: Callable[[Formats], tuple[int, int] | None]
  label: Callable[[Formats, PEModel], str]
  d1_fixed: int | None = None
  cycle_factor: Callable[[Formats], float] = lambda f: 1.0
  act_sparsity: str = "none"
  paper_pes: int | None = None
  paper_bits: str | None = None
  settings: Mapping[str, Callable[..., Accelerator]] = dataclasses.field(default_factory=dict)
  in_paper_table: bool = True
  dram_codec: str = "none"
  mapping_generator: str = ""


#: name -> Design, in registration order.
DESIGNS: dict[str, Design] = {}


def register(design: Design) -> Design:
  """Adds ``design`` to the registry (its name must be new)."""
  if design.name in DESIGNS:
    raise ValueError(f"design {design.name!r} is already registered")
  DESIGNS[design.name] = design
  return design


def get(name: str) -> Design:
  """The registered design ``name``.

  Raises:
    ConfigError: unknown name (one line listing the known ones).
  """
  if name not in DESIGNS:
    raise ConfigError(f"unknown accelerator {name!r}; known: {', '.join(DESIGNS)}")
  return DESIGNS[name]
