"""ebsp-jax: Evolving Bit Sparsity Patterns (DAC 2022) in JAX/Flax.

Subpackages: ``numerics`` (the number format), ``arith`` (the bit-exact datapath),
``models``, ``data``, ``admm`` (training), ``hw`` (hardware cost model).
"""

from ebsp_jax.numerics import (BitPattern, NumberFormat, checked_encode, decode, encode,
                               fake_quant, fit_scale, leading_one, make_rule, on_grid,
                               pattern_stats, power_of_two, project, quantize, tree_fake_quant,
                               tree_fit_scale, tree_patterns, tree_project, tree_quantize, uniform)

__version__ = "0.1.0"
