"""Golden vectors of integer-mode networks for RTL verification (``.npz`` and ``$readmemh``).

The file format is specified in ``ebsp_jax/golden/FORMAT.md``.
"""

from ebsp_jax.golden.export import (ACC_SEMANTICS, DEFINITIONS, EPILOGUE_FORMULAS,
                                    FORMAT_VERSION, conv_geometry, epilogue_with_formulas,
                                    export, export_run, layer_dirname, load, lut_samples)
from ebsp_jax.golden.hexio import read_memh, to_words, write_memh
