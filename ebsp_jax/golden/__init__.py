"""Golden vectors of integer-mode networks for RTL verification (``.npz`` and ``$readmemh``)."""

from ebsp_jax.golden.export import export, layer_dirname, load, lut_samples
from ebsp_jax.golden.hexio import read_memh, to_words, write_memh
