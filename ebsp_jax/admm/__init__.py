"""ADMM quantization-aware training as optax transformations (docs/method.md §6).

``admm(rule, rho, update_every)`` is the transformation; ``straight_through`` gives the weights
the forward pass computes with, ``finalize`` hard-projects at the end, ``tree_scales`` and
``tree_rule`` export the result for integer inference. ρ policies live in :mod:`.rho`.
"""

from ebsp_jax.admm.admm import (ADMMState, StaticPattern, admm, admm_metrics, finalize,
                                find_admm_states, primal_residual, straight_through, tree_rule,
                                tree_scales, with_admm)
from ebsp_jax.admm.rho import (RhoPolicy, as_policy, constant_rho, geometric_rho,
                               residual_balancing_rho, scheduled_rho)
