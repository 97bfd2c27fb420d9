"""Number formats: the bit-sparsity pattern, quantizers, hardware codes, telemetry."""

from ebsp_jax.numerics.codes import checked_encode, decode, encode, leading_one, on_grid
from ebsp_jax.numerics.pattern import BitPattern, NumberFormat, power_of_two, uniform
from ebsp_jax.numerics.quantizers import fake_quant, fit_scale, project, quantize
from ebsp_jax.numerics.stats import pattern_stats
from ebsp_jax.numerics.tree import (Rule, channel_axes, make_rule, path_str, tree_fake_quant,
                                    tree_fit_scale, tree_patterns, tree_project, tree_quantize,
                                    layer_patterns)
