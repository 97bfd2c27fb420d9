"""Tests of the ADMM optax transformation (jit and no-jit via chex.variants)."""

from absl.testing import absltest
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ebsp_jax import admm as admm_lib  # the package: admm_lib.admm is the transformation
from ebsp_jax.admm import rho as rho_lib
from ebsp_jax.numerics import BitPattern, make_rule, on_grid, project, quantize, uniform

P63 = BitPattern(6, 3)


def _params(seed=0):
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
  return {
      "conv": {"kernel": jax.random.normal(k1, (3, 3, 2, 4)) * 0.3, "bias": jnp.zeros(4)},
      "dense": {"kernel": jax.random.normal(k2, (8, 5)) * 0.2, "bias": jax.random.normal(k3, (5,))},
  }


def _grads(params, seed=1):
  leaves, tdef = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return jax.tree_util.tree_unflatten(
      tdef, [jax.random.normal(k, x.shape) * 0.05 for k, x in zip(keys, leaves)])


RULE = make_rule(P63)


class AdmmTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_init_state(self):
    params = _params()
    state = self.variant(admm_lib.admm(RULE, rho=0.5).init)(params)
    self.assertIsNone(state.z["conv"]["bias"])
    self.assertIsNone(state.u["dense"]["bias"])
    self.assertEqual(state.scales["conv"]["kernel"].shape, (1, 1, 1, 4))
    self.assertEqual(state.scales["dense"]["kernel"].shape, (1, 5))
    np.testing.assert_allclose(state.rho, 0.5)
    chex.assert_trees_all_equal(state.u["conv"]["kernel"], jnp.zeros((3, 3, 2, 4)))
    z = state.z["conv"]["kernel"]
    s = state.scales["conv"]["kernel"]
    chex.assert_trees_all_close(z, project(params["conv"]["kernel"], P63, s))
    self.assertTrue(bool(jnp.all(on_grid(quantize(z, P63, s), P63))))

  @chex.variants(with_jit=True, without_jit=True)
  def test_penalty_gradient_value(self):
    params, grads = _params(), _grads(_params())
    tx = admm_lib.admm(RULE, rho=0.25, update_every=10)
    state = tx.init(params)
    # Make U non-zero so the test sees all three terms.
    u = jax.tree_util.tree_map(lambda x: None if x is None else x + 0.01, state.u,
                               is_leaf=lambda x: x is None)
    state = state._replace(u=u)
    updates, new_state = self.variant(tx.update)(grads, state, params)
    for layer in ("conv", "dense"):
      w, z, uu = params[layer]["kernel"], state.z[layer]["kernel"], state.u[layer]["kernel"]
      chex.assert_trees_all_close(updates[layer]["kernel"],
                                  grads[layer]["kernel"] + 0.25 * (w - z + uu), rtol=1e-6)
      chex.assert_trees_all_equal(updates[layer]["bias"], grads[layer]["bias"])
    self.assertEqual(int(new_state.count), 1)
    self.assertEqual(int(new_state.num_z_steps), 0)  # no Z-step at count 0

  @chex.variants(with_jit=True, without_jit=True)
  def test_z_step_on_grid_u_update_and_residuals(self):
    params = _params()
    tx = admm_lib.admm(RULE, rho=0.3, update_every=1)
    state = tx.init(params)
    grads = _grads(params)
    update = self.variant(tx.update)
    _, state = update(grads, state, params)  # count 0 -> no Z-step
    w2 = jax.tree_util.tree_map(lambda x: x * 1.1 + 0.01, params)
    _, state2 = update(grads, state, w2)     # count 1 -> Z-step with W = w2
    self.assertEqual(int(state2.num_z_steps), 1)
    sq_primal, sq_dual = 0.0, 0.0
    for layer in ("conv", "dense"):
      w, u_old = w2[layer]["kernel"], state.u[layer]["kernel"]
      z, s = state2.z[layer]["kernel"], state2.scales[layer]["kernel"]
      # Z on grid, with its scale refit on W + U.
      q = quantize(z, P63, s)
      self.assertTrue(bool(jnp.all(on_grid(q, P63))))
      chex.assert_trees_all_close(z, q * s, rtol=1e-6)
      chex.assert_trees_all_close(z, project(w + u_old, P63, s))
      # U += W - Z.
      chex.assert_trees_all_close(state2.u[layer]["kernel"], u_old + w - z, atol=1e-7)
      sq_primal += float(jnp.sum((w - z) ** 2))
      sq_dual += float(jnp.sum((z - state.z[layer]["kernel"]) ** 2))
    np.testing.assert_allclose(state2.primal_residual, np.sqrt(sq_primal), rtol=1e-5)
    np.testing.assert_allclose(state2.dual_residual, 0.3 * np.sqrt(sq_dual), rtol=1e-5)
    chex.assert_trees_all_close(admm_lib.primal_residual(w2, state2), state2.primal_residual,
                                rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_update_every(self):
    params = _params()
    tx = admm_lib.admm(RULE, rho=0.1, update_every=3)
    state = tx.init(params)
    update = self.variant(tx.update)
    seen = []
    grads = _grads(params)
    for _ in range(7):
      _, state = update(grads, state, params)
      seen.append(int(state.num_z_steps))
    # Z-steps at the start of calls 3 and 6.
    self.assertEqual(seen, [0, 0, 0, 1, 1, 1, 2])

  @chex.variants(with_jit=True, without_jit=True)
  def test_geometric_rho_and_dual_rescale(self):
    params = _params()
    tx = admm_lib.admm(RULE, rho=rho_lib.geometric_rho(0.1, 2.0, max_value=0.5), update_every=1)
    state = tx.init(params)
    update = self.variant(tx.update)
    rhos = []
    for i in range(5):
      w = jax.tree_util.tree_map(lambda x: x * (1 + 0.05 * i), params)
      prev = state
      _, state = update(_grads(params), state, w)
      rhos.append(float(state.rho))
      if i >= 1:
        # U is the updated dual rescaled by rho_old / rho_new.
        z = state.z["dense"]["kernel"]
        expect = (prev.u["dense"]["kernel"] + w["dense"]["kernel"] - z) * (prev.rho / state.rho)
        chex.assert_trees_all_close(state.u["dense"]["kernel"], expect, atol=1e-6)
    np.testing.assert_allclose(rhos, [0.1, 0.2, 0.4, 0.5, 0.5], rtol=1e-6)

  def test_no_dual_rescale(self):
    params = _params()
    tx = admm_lib.admm(RULE, rho=rho_lib.geometric_rho(0.1, 2.0), update_every=1,
                       rescale_dual=False)
    state = tx.init(params)
    _, state = tx.update(_grads(params), state, params)
    w = jax.tree_util.tree_map(lambda x: x * 1.2, params)
    _, state2 = tx.update(_grads(params), state, w)
    chex.assert_trees_all_close(
        state2.u["conv"]["kernel"],
        state.u["conv"]["kernel"] + w["conv"]["kernel"] - state2.z["conv"]["kernel"], atol=1e-7)

  @chex.variants(with_jit=True, without_jit=True)
  def test_residual_balancing(self):
    params = _params()
    policy = rho_lib.residual_balancing_rho(1.0, mu=10.0, tau=2.0)
    tx = admm_lib.admm(RULE, rho=policy, update_every=1)
    state = tx.init(params)
    update = self.variant(tx.update)
    _, state = update(_grads(params), state, params)
    # Same W, U = 0: Z is the same projection again -> dual 0 < primal -> rho doubles.
    _, s1 = update(_grads(params), state, params)
    self.assertGreater(float(s1.primal_residual), 0.0)
    np.testing.assert_allclose(s1.dual_residual, 0.0, atol=1e-6)
    np.testing.assert_allclose(s1.rho, 2.0)
    # W jumps by 0.5: Z moves a lot, W stays near its new projection -> dual >> primal -> halves.
    w = jax.tree_util.tree_map(lambda x: x + 0.5, params)
    _, s2 = update(_grads(params), s1, w)
    self.assertGreater(float(s2.dual_residual), 10 * float(s2.primal_residual))
    np.testing.assert_allclose(s2.rho, 1.0)

  @chex.variants(with_jit=True, without_jit=True)
  def test_finalize_and_straight_through(self):
    params = _params()
    tx = optax.chain(admm_lib.admm(RULE, rho=0.1, update_every=2), optax.sgd(0.05, momentum=0.9))
    state = tx.init(params)

    def step(p, s):
      loss = lambda q: sum(jnp.sum(jnp.sin(x)) for x in jax.tree_util.tree_leaves(q))  # noqa: E731
      g = jax.grad(lambda q: loss(admm_lib.straight_through(q, s)))(p)
      u, s = tx.update(g, s, p)
      return optax.apply_updates(p, u), s

    step = self.variant(step)
    for _ in range(3):
      params, state = step(params, state)
    final = self.variant(admm_lib.finalize)(params, state)
    scales = admm_lib.tree_scales(params, state)
    for layer in ("conv", "dense"):
      q = quantize(final[layer]["kernel"], P63, scales[layer]["kernel"])
      self.assertTrue(bool(jnp.all(on_grid(q, P63))))
      chex.assert_trees_all_close(final[layer]["kernel"], q * scales[layer]["kernel"], rtol=1e-6)
      # The forward pass during ADMM computed with exactly the finalized weights.
      chex.assert_trees_all_close(admm_lib.straight_through(params, state)[layer]["kernel"],
                                  final[layer]["kernel"])
      chex.assert_trees_all_equal(final[layer]["bias"], params[layer]["bias"])
    refit = admm_lib.finalize(params, state, refit_scales=True)
    err_fixed = float(jnp.sum((final["conv"]["kernel"] - params["conv"]["kernel"]) ** 2))
    err_refit = float(jnp.sum((refit["conv"]["kernel"] - params["conv"]["kernel"]) ** 2))
    self.assertLessEqual(err_refit, err_fixed + 1e-6)
    self.assertIs(admm_lib.tree_rule(state)("conv/kernel", None), P63)
    self.assertIsNone(admm_lib.tree_rule(state)("conv/bias", None))

  @chex.variants(with_jit=True, without_jit=True)
  def test_finalize_returns_the_scales_it_projected_with(self):
    """``refit_scales=True`` projects at new scales: ``return_scales`` gives them; the state's
    scales (``tree_scales``) would round the refit weights again."""
    params = _params()
    state = admm_lib.admm(RULE, rho=0.1).init(params)
    # W drifted away from the scales of the last Z-step (here: init), as after training.
    params = jax.tree_util.tree_map(lambda w: 1.7 * w, params)
    fin = self.variant(admm_lib.finalize, static_argnames=("refit_scales", "return_scales"))
    final, scales = fin(params, state, return_scales=True)
    chex.assert_trees_all_equal(final, fin(params, state))
    chex.assert_trees_all_equal(scales, admm_lib.tree_scales(params, state))
    refit, refit_scales = fin(params, state, refit_scales=True, return_scales=True)
    chex.assert_trees_all_equal(refit, fin(params, state, refit_scales=True))
    state_scales = admm_lib.tree_scales(refit, state)
    for layer in ("conv", "dense"):
      w, s = refit[layer]["kernel"], refit_scales[layer]["kernel"]
      self.assertEqual(s.shape, state_scales[layer]["kernel"].shape)
      q = quantize(w, P63, s)
      self.assertTrue(bool(jnp.all(on_grid(q, P63))))
      chex.assert_trees_all_close(q * s, w, rtol=1e-6)           # exact at the returned scales
      again = project(w, P63, state_scales[layer]["kernel"])
      self.assertGreater(float(jnp.max(jnp.abs(again - w))), 1e-3)   # the state's round again
      self.assertIsNone(refit_scales[layer]["bias"])
      chex.assert_trees_all_equal(refit[layer]["bias"], params[layer]["bias"])

  def test_straight_through_gradient(self):
    params = _params()
    state = admm_lib.admm(RULE).init(params)
    g = jax.grad(lambda p: jnp.sum(admm_lib.straight_through(p, state)["dense"]["kernel"] * 3.0))(
        params)
    # Identity gradient inside the range (no weight saturates at its fitted scale here except
    # possibly the channel max, which sits at the max level).
    w, s = params["dense"]["kernel"], state.scales["dense"]["kernel"]
    inside = jnp.abs(w / s) <= P63.max_level
    chex.assert_trees_all_close(g["dense"]["kernel"], jnp.where(inside, 3.0, 0.0))

  @chex.variants(with_jit=True, without_jit=True)
  def test_masked_multi_transform_and_schedule(self):
    params = _params()
    grads = _grads(params)
    sched = optax.cosine_decay_schedule(0.1, 10)
    mask = {"conv": {"kernel": True, "bias": False}, "dense": {"kernel": False, "bias": False}}
    tx = optax.chain(optax.masked(admm_lib.admm(RULE, rho=0.2), mask), optax.sgd(sched))
    state = tx.init(params)
    updates, state = self.variant(tx.update)(grads, state, params)
    (ast,) = admm_lib.find_admm_states(state)
    z = ast.z["conv"]["kernel"]
    chex.assert_trees_all_close(updates["conv"]["kernel"],
                                -0.1 * (grads["conv"]["kernel"] + 0.2 * (params["conv"]["kernel"] - z)),
                                rtol=1e-5)
    chex.assert_trees_all_close(updates["dense"]["kernel"], -0.1 * grads["dense"]["kernel"], rtol=1e-6)
    final = admm_lib.finalize(params, state)
    chex.assert_trees_all_equal(final["dense"]["kernel"], params["dense"]["kernel"])
    self.assertIsNone(admm_lib.tree_scales(params, state)["dense"]["kernel"])

    # multi_transform: two ADMM groups with different patterns and rho.
    labels = {"conv": {"kernel": "a", "bias": "f"}, "dense": {"kernel": "b", "bias": "f"}}
    tx2 = optax.chain(
        optax.multi_transform({"a": admm_lib.admm(RULE, rho=0.1),
                               "b": admm_lib.admm(make_rule(uniform(8)), rho=0.3),
                               "f": optax.identity()}, labels),
        optax.adam(1e-2))
    s2 = tx2.init(params)
    _, s2 = self.variant(tx2.update)(grads, s2, params)
    self.assertLen(admm_lib.find_admm_states(s2), 2)
    rule = admm_lib.tree_rule(s2)
    self.assertEqual(rule("conv/kernel", None), P63)
    self.assertEqual(rule("dense/kernel", None), uniform(8))
    fin = admm_lib.finalize(params, s2)
    sc = admm_lib.tree_scales(params, s2)
    self.assertTrue(bool(jnp.all(on_grid(quantize(fin["dense"]["kernel"], uniform(8),
                                                  sc["dense"]["kernel"]), uniform(8)))))

  def _assert_one_line(self, err):
    msg = str(err.exception)
    self.assertNotIn("\n", msg)
    return msg

  def test_params_mismatch_raises(self):
    """finalize/tree_scales/straight_through/primal_residual skip nothing silently."""
    params = _params()
    state = optax.chain(admm_lib.admm(RULE, rho=0.1), optax.sgd(0.1)).init(params)
    fns = {"finalize": admm_lib.finalize, "tree_scales": admm_lib.tree_scales,
           "straight_through": admm_lib.straight_through,
           "primal_residual": admm_lib.primal_residual}
    for name, fn in fns.items():
      with self.subTest(name), self.assertRaisesRegex(
          ValueError, rf"^{name}: params do not match the ADMM state.*variables\['params'\]") as e:
        fn({"params": params}, state)
      self._assert_one_line(e)
      with self.subTest(name + " under jit"), self.assertRaisesRegex(ValueError, name):
        jax.jit(fn)({"params": params}, state)
    # A leaf missing (here a float one: float leaves are part of the layout too).
    partial = {"conv": params["conv"], "dense": {"kernel": params["dense"]["kernel"]}}
    with self.assertRaisesRegex(ValueError, r"1 of its 4 leaf paths .*'dense/bias'") as e:
      admm_lib.finalize(partial, state)
    self._assert_one_line(e)
    # A leaf the state does not know.
    extra = {**params, "head": {"kernel": jnp.ones((5, 2))}}
    with self.assertRaisesRegex(ValueError, r"1 params leaves are unknown to it .*'head/kernel'"):
      admm_lib.tree_scales(extra, state)
    # Same paths, another shape at a quantized leaf.
    other = {**params, "dense": {**params["dense"], "kernel": jnp.ones((8, 6))}}
    with self.assertRaisesRegex(ValueError, r"'dense/kernel' has shape \(8, 6\).*\(8, 5\)") as e:
      admm_lib.straight_through(other, state)
    self._assert_one_line(e)
    # The other way round: the state was built on the wrapped tree.
    wrapped_state = admm_lib.admm(RULE).init({"params": params})
    with self.assertRaisesRegex(ValueError, r"holds these params under 'params'"):
      admm_lib.finalize(params, wrapped_state)
    chex.assert_trees_all_close(admm_lib.finalize({"params": params}, wrapped_state)["params"],
                                admm_lib.finalize(params, state))

  def test_matching_params_with_float_and_masked_leaves(self):
    """Float leaves (rule -> None) and masked-out subtrees (prefix masks too) are accepted."""
    params = _params()
    for mask in ({"conv": True, "dense": False},
                 {"conv": {"kernel": True, "bias": False},
                  "dense": {"kernel": False, "bias": True}},
                 lambda p: jax.tree_util.tree_map(lambda x: x.ndim > 1, p)):
      with self.subTest(str(mask)):
        state = optax.chain(optax.masked(admm_lib.admm(RULE), mask), optax.sgd(0.1)).init(params)
        final = admm_lib.finalize(params, state)
        chex.assert_trees_all_equal(final["conv"]["bias"], params["conv"]["bias"])
        self.assertIsNone(admm_lib.tree_scales(params, state)["conv"]["bias"])
        self.assertIsNotNone(admm_lib.tree_scales(params, state)["conv"]["kernel"])
        with self.assertRaisesRegex(ValueError, r"variables\['params'\]"):
          admm_lib.finalize({"params": params}, state)
        with self.assertRaisesRegex(ValueError, r"'head/kernel'"):
          admm_lib.finalize({**params, "head": {"kernel": jnp.ones((5, 2))}}, state)

  def test_flax_model_variables(self):
    """The README tour: the state is built on ``variables['params']``; ``variables`` is refused."""
    from ebsp_jax import models  # pylint: disable=g-import-not-at-top
    model = models.get_model("lenet5", num_classes=10)
    x = jnp.zeros((2, 28, 28, 1))
    variables = model.init(jax.random.key(1), x, train=False)
    params = variables["params"]
    state = optax.chain(admm_lib.admm(RULE), optax.sgd(0.1)).init(params)
    with self.assertRaisesRegex(ValueError, r"^finalize: .*variables\['params'\]") as e:
      admm_lib.finalize(variables, state)
    self._assert_one_line(e)
    with self.assertRaisesRegex(ValueError, r"^tree_scales: "):
      admm_lib.tree_scales(variables, state)
    final = admm_lib.finalize(params, state)
    scales = admm_lib.tree_scales(params, state)
    n_quantized = 0
    for (path, w), (_, f), (_, s) in zip(
        jax.tree_util.tree_flatten_with_path(params)[0],
        jax.tree_util.tree_flatten_with_path(final)[0],
        jax.tree_util.tree_flatten_with_path(scales, is_leaf=lambda v: v is None)[0]):
      if s is None:
        chex.assert_trees_all_equal(f, w)
      else:
        n_quantized += 1
        self.assertTrue(bool(jnp.all(on_grid(quantize(f, P63, s), P63))), path)
    self.assertGreater(n_quantized, 1)

  def test_numpy_scalars_accepted(self):
    params = _params()
    for rho, every in ((np.float32(0.1), np.int64(5)), (np.float64(0.1), np.int32(5)),
                       (np.array(0.1), np.array(5)), (jnp.float32(0.1), jnp.int32(5)), (1, 5)):
      with self.subTest(f"{type(rho).__name__}, {type(every).__name__}"):
        tx = admm_lib.admm(RULE, rho=rho, update_every=every)
        state = tx.init(params)
        np.testing.assert_allclose(state.rho, float(rho), rtol=1e-6)
        for _ in range(6):
          _, state = tx.update(_grads(params), state, params)
        self.assertEqual(int(state.num_z_steps), 1)  # the Z-step at the start of call 5

  def test_bad_numbers_rejected(self):
    cases = [
        (dict(rho=True), TypeError, r"^rho must be a number or a RhoPolicy, got bool"),
        (dict(rho=np.bool_(True)), TypeError, r"^rho must be .*bool"),
        (dict(rho="0.1"), TypeError, r"^rho must be a number or a RhoPolicy, got str"),
        (dict(rho=np.array([0.1, 0.2])), ValueError, r"^rho must be a single number.*\(2,\)"),
        (dict(rho=np.ones((30, 30))), ValueError, r"^rho must be a single number"),
        (dict(rho=np.inf), ValueError, r"^rho must be a positive finite number, got inf"),
        (dict(rho=np.float32("nan")), ValueError, r"^rho must be a positive finite"),
        (dict(rho=np.float32(0.0)), ValueError, r"^rho must be a positive finite"),
        (dict(rho=-1), ValueError, r"^rho must be a positive finite"),
        (dict(rho=optax.constant_schedule(0.1)), TypeError, r"scheduled_rho"),
        (dict(update_every=True), TypeError, r"^update_every must be an int"),
        (dict(update_every=np.bool_(True)), TypeError, r"^update_every must be an int"),
        (dict(update_every=5.0), TypeError, r"^update_every must be an int .*float 5.0"),
        (dict(update_every=np.float64(5.0)), TypeError, r"^update_every must be an int"),
        (dict(update_every=np.array([5, 5])), ValueError, r"^update_every must be a single"),
        (dict(update_every=np.int64(0)), ValueError, r"^update_every must be an int >= 1, got 0"),
        (dict(update_every=-3), ValueError, r"^update_every must be an int >= 1"),
    ]
    for kwargs, exc, regex in cases:
      with self.subTest(repr(kwargs)), self.assertRaisesRegex(exc, regex) as e:
        admm_lib.admm(RULE, **kwargs)
      self._assert_one_line(e)

  def test_traced_rho_rejected(self):
    with self.assertRaisesRegex(TypeError, r"^rho must be .*traced value"):
      jax.jit(lambda r: admm_lib.admm(RULE, rho=r).init(_params()))(0.1)

  def test_custom_policy_values_checked(self):
    params = _params()
    bad_init = rho_lib.RhoPolicy(lambda: -1.0, lambda rho, n, r, s: rho, "bad_init")
    with self.assertRaisesRegex(ValueError, r"'bad_init'.*positive finite.*-1.0") as e:
      admm_lib.admm(RULE, rho=bad_init)
    self._assert_one_line(e)
    negative = rho_lib.RhoPolicy(lambda: 1.0, lambda rho, n, r, s: -rho, "negative")
    tx = admm_lib.admm(RULE, rho=negative)
    state = tx.init(params)
    _, state = tx.update(_grads(params), state, params)  # no Z-step yet
    with self.assertRaisesRegex(ValueError, r"'negative' gave rho=-1.0"):
      tx.update(_grads(params), state, params)           # eager Z-step: concrete rho, checked
    vector = rho_lib.RhoPolicy(lambda: 1.0, lambda rho, n, r, s: jnp.full((2,), rho), "vector")
    tx = admm_lib.admm(RULE, rho=vector)
    state = tx.init(params)
    _, state = tx.update(_grads(params), state, params)
    with self.assertRaisesRegex(ValueError, r"'vector' must return a scalar rho, got shape \(2,\)"):
      jax.jit(tx.update)(_grads(params), state, params)  # the shape is checked under jit too

  def test_scheduled_rho_checked_when_concrete(self):
    params = _params()
    tx = admm_lib.admm(RULE, rho=rho_lib.scheduled_rho(lambda n: 1.0 - n), update_every=1)
    state = tx.init(params)
    _, state = tx.update(_grads(params), state, params)
    with self.assertRaisesRegex(ValueError, r"schedule\(1\) gave rho=0.0"):
      tx.update(_grads(params), state, params)
    # Under jit the value is traced: documented as the schedule's responsibility, passed as is
    # (no clipping that would silently change the schedule).
    _, jitted = jax.jit(tx.update)(_grads(params), state, params)
    np.testing.assert_allclose(jitted.rho, 0.0)

  def test_with_admm_wrapper_and_errors(self):
    params = _params()
    tx = admm_lib.with_admm(optax.sgd(0.1), RULE, rho=0.1)
    state = tx.init(params)
    with self.assertRaisesRegex(ValueError, "needs params"):
      tx.update(_grads(params), state)
    with self.assertRaisesRegex(ValueError, "update_every"):
      admm_lib.admm(RULE, update_every=0)
    with self.assertRaisesRegex(ValueError, "no ADMMState"):
      admm_lib.finalize(params, optax.sgd(0.1).init(params))
    with self.assertRaisesRegex(ValueError, "positive"):
      admm_lib.admm(RULE, rho=-1.0)

  def test_converges_to_grid(self):
    """ADMM on a quadratic drives W onto the grid: the primal residual shrinks."""
    params = _params()
    target = jax.tree_util.tree_map(lambda x: x + 0.05, params)
    tx = optax.chain(admm_lib.admm(RULE, rho=rho_lib.geometric_rho(0.1, 1.6, 20.0),
                                   update_every=5), optax.sgd(0.1))
    state = tx.init(params)

    @jax.jit
    def step(p, s):
      g = jax.grad(lambda q: sum(jnp.sum((a - b) ** 2) for a, b in zip(
          jax.tree_util.tree_leaves(q), jax.tree_util.tree_leaves(target))))(p)
      u, s = tx.update(g, s, p)
      return optax.apply_updates(p, u), s

    res = []
    for i in range(60):
      params, state = step(params, state)
      if i % 20 == 19:
        res.append(float(admm_lib.primal_residual(params, state)))
    self.assertLess(res[-1], 0.1 * res[0] + 1e-6)

  def test_sharded_params(self):
    devices = np.array(jax.devices())
    mesh = jax.sharding.Mesh(devices, ("data",))
    repl = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    params = jax.device_put(_params(), repl)
    tx = optax.chain(admm_lib.admm(RULE, rho=0.1, update_every=1), optax.sgd(0.1))
    state = jax.jit(tx.init)(params)

    @jax.jit
    def step(p, s):
      u, s = tx.update(_grads(p), s, p)
      return optax.apply_updates(p, u), s

    p2, s2 = step(*step(params, state))
    self.assertEqual(int(admm_lib.find_admm_states(s2)[0].num_z_steps), 1)
    self.assertEqual(p2["conv"]["kernel"].sharding, repl)


if __name__ == "__main__":
  absltest.main()
