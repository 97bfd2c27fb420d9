"""Tests of the pytree helpers and rules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebsp_jax.numerics import codes, pattern as pat, quantizers as qz, tree


def _params():
  k = jax.random.split(jax.random.key(0), 4)
  return {
      "conv_init": {"kernel": jax.random.normal(k[0], (3, 3, 1, 8)), "bias": jnp.zeros(8)},
      "block": {"conv": {"kernel": jax.random.normal(k[1], (3, 3, 8, 8))},
                "bn": {"scale": jnp.ones(8), "bias": jnp.zeros(8)}},
      "head": {"kernel": jax.random.normal(k[2], (8, 10)), "bias": jnp.zeros(10)},
  }


def test_make_rule_overrides_exclusions_and_defaults():
  p6, p8 = pat.BitPattern(6, 3), pat.uniform(8)
  rule = tree.make_rule(p6, overrides=[("^conv_init/", p8), ("^head/", None)])
  pats = tree.tree_patterns(_params(), rule)
  assert pats["conv_init"]["kernel"] == p8 and pats["conv_init"]["bias"] is None
  assert pats["block"]["conv"]["kernel"] == p6
  assert pats["block"]["bn"]["scale"] is None and pats["head"]["kernel"] is None
  rule2 = tree.make_rule(p6, exclude=[r"block/"])
  assert tree.tree_patterns(_params(), rule2)["block"]["conv"]["kernel"] is None


def test_fit_quantize_project_whole_tree():
  p6 = pat.BitPattern(6, 3)
  params = _params()
  rule = tree.make_rule(p6, overrides=[("^conv_init/", pat.BitPattern(8, 4))])
  scales = tree.tree_fit_scale(params, rule)
  assert scales["block"]["conv"]["kernel"].shape == (1, 1, 1, 8)
  assert scales["head"]["kernel"].shape == (1, 10)
  assert scales["block"]["bn"]["scale"] is None
  q = tree.tree_quantize(params, rule, scales)
  assert q["head"]["bias"] is None
  assert bool(jnp.all(codes.on_grid(q["block"]["conv"]["kernel"], p6)))
  np.testing.assert_array_equal(
      np.asarray(q["conv_init"]["kernel"]),
      np.asarray(qz.quantize(params["conv_init"]["kernel"], pat.BitPattern(8, 4),
                             scales["conv_init"]["kernel"])))
  proj = tree.tree_project(params, rule)
  np.testing.assert_array_equal(np.asarray(proj["block"]["bn"]["scale"]), np.ones(8))
  np.testing.assert_allclose(np.asarray(proj["head"]["kernel"]),
                             np.asarray(q["head"]["kernel"] * scales["head"]["kernel"]), rtol=1e-6)
  # Fake quant: same forward, identity gradient inside the range to every kernel.
  fq = jax.jit(lambda p: tree.tree_fake_quant(p, rule, scales))(params)
  np.testing.assert_allclose(np.asarray(fq["head"]["kernel"]), np.asarray(proj["head"]["kernel"]))
  g = jax.grad(lambda p: sum(jnp.sum(x) for x in jax.tree.leaves(
      tree.tree_fake_quant(p, rule, scales))))(params)
  assert float(jnp.min(g["block"]["conv"]["kernel"])) >= 0.0
  np.testing.assert_array_equal(np.asarray(g["head"]["bias"]), np.ones(10))


def test_missing_scale_is_a_clear_error():
  rule = tree.make_rule(pat.BitPattern(6, 3))
  params = _params()
  scales = jax.tree.map(lambda _: None, params)
  with pytest.raises(ValueError, match="no scale for quantized leaf 'block/conv/kernel'"):
    tree.tree_quantize(params, rule, scales)


def test_per_tensor_option():
  rule = tree.make_rule(pat.BitPattern(6, 3))
  s = tree.tree_fit_scale(_params(), rule, per_channel=False)
  assert s["block"]["conv"]["kernel"].shape == ()


def test_make_rule_rejects_pattern_strings_up_front():
  with pytest.raises(TypeError, match=r"^make_rule: pattern must be a BitPattern .*got str '6b'"):
    tree.make_rule("6b")
  with pytest.raises(TypeError, match=r"^make_rule \(overrides\): .*got str '8b'"):
    tree.make_rule(pat.BitPattern(6, 3), overrides=[("^head/", "8b")])
  rule = tree.make_rule(None, overrides=(o for o in [("^head/", pat.uniform(8))]))  # generator ok
  assert tree.tree_patterns(_params(), rule)["head"]["kernel"] == pat.uniform(8)
  assert tree.tree_patterns(_params(), rule)["block"]["conv"]["kernel"] is None


def test_layer_patterns_names_every_kernel_with_its_pattern_or_none():
  params = {"conv_init": {"kernel": jnp.ones((3, 3, 1, 4)), "bias": jnp.ones(4)},
            "stage/conv": {"kernel": jax.ShapeDtypeStruct((3, 3, 4, 4), jnp.float32)},
            "head": {"kernel": jnp.ones((4, 2))}}
  rule = tree.make_rule(pat.BitPattern(6, 3), overrides=[("^head/", None)])
  assert tree.layer_patterns(params, rule) == {"conv_init": pat.BitPattern(6, 3),
                                               "stage/conv": pat.BitPattern(6, 3), "head": None}
