"""Tests of the ρ policies."""

from absl.testing import absltest
import chex
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

  def test_errors(self):
    with self.assertRaisesRegex(ValueError, "positive"):
      rho_lib.constant_rho(0.0)
    with self.assertRaisesRegex(ValueError, "positive"):
      rho_lib.geometric_rho(1.0, -2.0)
    with self.assertRaisesRegex(TypeError, "RhoPolicy"):
      rho_lib.as_policy("big")


if __name__ == "__main__":
  absltest.main()
