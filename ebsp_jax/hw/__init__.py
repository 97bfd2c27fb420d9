"""Hardware cost model: energy, latency and area of EBSP against Eyeriss, Bit Fusion, WAX, OLAccel.

Modules (one concept each):

* :mod:`~ebsp_jax.hw.tech`: 45 nm technology tables with a cited source for every number
  (Horowitz ISSCC 2014, NanGate45 cells, CACTI 7), derivations, node scaling.
* :mod:`~ebsp_jax.hw.cacti`: runs the CACTI binary vendored by zigzag-dse (regenerates the
  frozen SRAM table).
* :mod:`~ebsp_jax.hw.components`: adders, multipliers, muxes, shifters, LOD, registers.
* :mod:`~ebsp_jax.hw.pe`: PE parts and the bottom-up PE models (EBSP's LOD + mux + LUT +
  shifter + adder).
* :mod:`~ebsp_jax.hw.spec`: memory levels and accelerators (the hardware description types).
* :mod:`~ebsp_jax.hw.designs`: the design registry, one module per accelerator with its papers'
  settings (Eyeriss's JSSC chip, Bit Fusion's artifact, OLAccel vs ZeNA, WAX vs Eyeriss).
* :mod:`~ebsp_jax.hw.area`: PE area by scope -> PE count at equal area (paper: 0.32 mm^2).
* :mod:`~ebsp_jax.hw.arch`: accelerators = PE array + memory hierarchy.
* :mod:`~ebsp_jax.hw.workload`: conv/matmul layers of any JAX/Flax model, from its jaxpr.
* :mod:`~ebsp_jax.hw.dataflow`: loop-nest model (ZigZag's counting rules) and mapper.
* :mod:`~ebsp_jax.hw.events`: data-aware statistics (``LayerEvents`` schema) from trained weights.
* :mod:`~ebsp_jax.hw.activations`: activation sparsity captured from a model run on real data.
* :mod:`~ebsp_jax.hw.validation`: each baseline against its own paper's figures.
* :mod:`~ebsp_jax.hw.report`: network evaluation, report JSON, paper comparison.
* :mod:`~ebsp_jax.hw.figures`: energy breakdown, latency and Pareto figures.
* :mod:`~ebsp_jax.hw.zigzag_export` / :mod:`~ebsp_jax.hw.timeloop_export`: interoperation.

Quick start::

    from ebsp_jax import hw
    wl = hw.model_workload("resnet50", "imagenet")          # 4.09 GMAC, 54 layers
    accs = hw.build_all(pattern_bits=6, pattern_length=3)   # equal area, 0.32 mm^2
    result = hw.evaluate_network(wl, accs, dataset="imagenet")
    print(hw.format_table(result))

The command-line report is ``experiments/hardware.py``; the method, sources and results are in
``docs/hardware.md``.
"""

from ebsp_jax.hw.arch import (ACCELERATORS, Accelerator, ConfigError, MemLevel, build_accelerator,
                              build_all, check_formats)
from ebsp_jax.hw.area import AREA_SCOPES, PAPER_AREA_MM2, PAPER_PE_COUNTS, AreaError
from ebsp_jax.hw.dataflow import (LayerCost, Mapping, MappingError, best_mapping,
                                  evaluate_mapping)
from ebsp_jax.hw.events import (LayerEvents, events_from_codes, events_from_params, load_events,
                                load_params, save_events)
from ebsp_jax.hw.pe import Activity, PEModel, ebsp_pe
from ebsp_jax.hw.report import (NetworkResult, comparison, evaluate_network, format_table,
                                report_json)
from ebsp_jax.hw.tech import SOURCES, TechParams, tech_table
from ebsp_jax.hw.workload import (Layer, Workload, model_workload, paper_workload, trace_layers,
                                  trace_model)
from ebsp_jax.hw.designs import DESIGNS

__all__ = [
    "ACCELERATORS", "AREA_SCOPES", "Accelerator", "Activity", "AreaError", "ConfigError",
    "DESIGNS", "paper_workload",
    "Layer", "LayerCost", "LayerEvents", "Mapping", "MappingError", "MemLevel", "NetworkResult",
    "PAPER_AREA_MM2", "PAPER_PE_COUNTS", "PEModel", "SOURCES", "TechParams", "Workload",
    "best_mapping", "build_accelerator", "build_all", "check_formats", "comparison", "ebsp_pe",
    "evaluate_mapping", "evaluate_network", "events_from_codes", "events_from_params",
    "format_table", "load_events", "load_params", "model_workload", "report_json",
    "save_events", "tech_table", "trace_layers", "trace_model",
]
