"""Tests of the ρ policies."""

from absl.testing import absltest
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ebsp_jax.admm import rho as rho_lib


class RhoTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_constant(self):
    p = rho_lib.as_policy(0.3)
    self.assertEqual(p.init(), 0.3)
    out = self.variant(p.update)(jnp.float32(0.3), jnp.int32(5), jnp.float32(1.0), jnp.float32(0.0))
    np.testing.assert_allclose(out, 0.3)

  @chex.variants(with_jit=True, without_jit=True)
  def test_geometric(self):
    p = rho_lib.geometric_rho(1e-3, 1.5, max_value=2e-3)
    upd = self.variant(p.update)
    r = jnp.float32(p.init())
    out = []
    for n in range(1, 4):
      r = upd(r, jnp.int32(n), jnp.float32(0), jnp.float32(0))
      out.append(float(r))
    np.testing.assert_allclose(out, [1.5e-3, 2e-3, 2e-3], rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_residual_balancing(self):
    p = rho_lib.residual_balancing_rho(1.0, mu=10.0, tau=2.0, max_value=3.0)
    upd = self.variant(p.update)
    one = jnp.float32(1.0)
    np.testing.assert_allclose(upd(one, 1, jnp.float32(100.0), jnp.float32(1.0)), 2.0)
    np.testing.assert_allclose(upd(one, 1, jnp.float32(1.0), jnp.float32(100.0)), 0.5)
    np.testing.assert_allclose(upd(one, 1, jnp.float32(5.0), jnp.float32(1.0)), 1.0)
    np.testing.assert_allclose(upd(jnp.float32(2.0), 1, jnp.float32(100.0), one), 3.0)

  @chex.variants(with_jit=True, without_jit=True)
  def test_scheduled(self):
    p = rho_lib.scheduled_rho(optax.exponential_decay(0.1, 1, 2.0))
    self.assertAlmostEqual(p.init(), 0.1)
    np.testing.assert_allclose(self.variant(p.update)(jnp.float32(0.1), jnp.int32(3), 0.0, 0.0),
                               0.8, rtol=1e-6)

  def _raises(self, exc, regex, fn, *args, **kwargs):
    with self.assertRaisesRegex(exc, regex) as e:
      fn(*args, **kwargs)
    self.assertNotIn("\n", str(e.exception))

  def test_geometric_errors(self):
    self._raises(ValueError, r"^geometric_rho: max_value must be >= init.*0.5 < init=1.0",
                 rho_lib.geometric_rho, 1.0, 1.1, max_value=0.5)
    self._raises(ValueError, r"max_value must be >= init", rho_lib.geometric_rho, 1.0, 1.1,
                 max_value=float("nan"))
    self._raises(ValueError, r"^rho factor must be a positive finite", rho_lib.geometric_rho,
                 1.0, float("inf"))
    self._raises(TypeError, r"^max_value must be a number", rho_lib.geometric_rho, 1.0, 1.1,
                 max_value="2")
    # The cap may equal init (constant), and be infinite (no cap).
    p = rho_lib.geometric_rho(1.0, 2.0, max_value=1.0)
    np.testing.assert_allclose(p.update(jnp.float32(1.0), 1, 0.0, 0.0), 1.0)
    p = rho_lib.geometric_rho(1.0, 2.0)
    np.testing.assert_allclose(p.update(jnp.float32(1.0), 1, 0.0, 0.0), 2.0)

  def test_residual_balancing_errors(self):
    rb = rho_lib.residual_balancing_rho
    self._raises(ValueError, r"^residual_balancing_rho: max_value must be >= min_value.*5.0.*2.0",
                 rb, 1.0, min_value=5, max_value=2)
    self._raises(ValueError, r"^residual_balancing_rho: tau must be a finite number > 1, got 0.5",
                 rb, 1.0, tau=0.5)
    self._raises(ValueError, r"tau must be a finite number > 1, got 1.0", rb, 1.0, tau=1.0)
    self._raises(ValueError, r"tau must be", rb, 1.0, tau=float("inf"))
    self._raises(ValueError, r"mu must be a finite number >= 1, got 0.5", rb, 1.0, mu=0.5)
    self._raises(ValueError, r"min_value must be a finite number >= 0, got -1.0", rb, 1.0,
                 min_value=-1.0)
    self._raises(ValueError, r"max_value must be >= min_value", rb, 1.0, max_value=float("nan"))
    self._raises(ValueError, r"init must lie in \[min_value, max_value\] = \[0.0, 0.5\], got 1.0",
                 rb, 1.0, max_value=0.5)
    self._raises(ValueError, r"init must lie in", rb, 1.0, min_value=2.0)
    self._raises(TypeError, r"^tau must be a number.*bool", rb, 1.0, tau=True)
    rb(1.0, mu=1.0, min_value=1.0, max_value=1.0)  # degenerate but valid: rho stays 1

  def test_numpy_scalars(self):
    p = rho_lib.as_policy(np.float32(0.25))
    self.assertAlmostEqual(p.init(), 0.25)
    self.assertIsInstance(p.init(), float)
    self.assertAlmostEqual(rho_lib.as_policy(np.array(0.5)).init(), 0.5)
    self.assertAlmostEqual(rho_lib.as_policy(np.int64(2)).init(), 2.0)
    p = rho_lib.geometric_rho(np.float32(0.5), np.float64(2.0), max_value=np.float32(1.0))
    np.testing.assert_allclose(p.update(jnp.float32(0.5), 1, 0.0, 0.0), 1.0)
    p = rho_lib.residual_balancing_rho(np.float32(1.0), mu=np.int64(10), tau=np.float32(2.0),
                                       min_value=np.float64(0.5), max_value=np.float32(4.0))
    np.testing.assert_allclose(p.update(jnp.float32(1.0), 1, jnp.float32(100.0), jnp.float32(1.0)),
                               2.0)
    self._raises(TypeError, r"^rho must be a number or a RhoPolicy, got bool", rho_lib.as_policy,
                 np.bool_(False))
    self._raises(ValueError, r"^rho must be a single number, got an array of shape \(3,\)",
                 rho_lib.as_policy, np.ones(3))

  def test_scheduled_requirements(self):
    self._raises(TypeError, r"^scheduled_rho: schedule must be a callable", rho_lib.scheduled_rho,
                 0.1)
    self._raises(ValueError, r"^scheduled_rho: schedule\(0\) must be a positive finite number, got "
                 r"0.0", rho_lib.scheduled_rho, optax.linear_schedule(0.0, 1.0, 10))
    self._raises(ValueError, r"schedule\(0\) must be a single number", rho_lib.scheduled_rho,
                 lambda n: jnp.full((2,), 0.1))
    p = rho_lib.scheduled_rho(lambda n: 1.0 - n)
    self.assertEqual(p.init(), 1.0)
    args = (jnp.float32(1.0), jnp.int32(2), jnp.float32(0), jnp.float32(0))
    # Concrete (eager) value: checked, naming the Z-step.
    self._raises(ValueError, r"^scheduled_rho: schedule\(2\) gave rho=-1.0; rho must stay",
                 p.update, *args)
    self._raises(ValueError, r"schedule\(1\) gave rho=inf",
                 rho_lib.scheduled_rho(lambda n: 1.0 / (1.0 - n)).update,
                 jnp.float32(1.0), jnp.float32(1.0), 0.0, 0.0)
    # Traced value (jit): documented as the schedule's responsibility, passed through unaltered.
    np.testing.assert_allclose(jax.jit(p.update)(*args), -1.0)
    # The shape is static: checked under jit too.
    vec = rho_lib.scheduled_rho(lambda n: 0.1 if isinstance(n, int) else jnp.full((2,), 0.1))
    with self.assertRaisesRegex(ValueError, r"^scheduled_rho: the schedule must return a scalar"):
      jax.jit(vec.update)(*args)

  def test_errors(self):
    with self.assertRaisesRegex(ValueError, "positive"):
      rho_lib.constant_rho(0.0)
    with self.assertRaisesRegex(ValueError, "positive"):
      rho_lib.geometric_rho(1.0, -2.0)
    with self.assertRaisesRegex(TypeError, "RhoPolicy"):
      rho_lib.as_policy("big")


if __name__ == "__main__":
  absltest.main()
