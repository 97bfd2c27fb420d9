"""Hutchinson and Fisher traces against exact Hessians / explicit loops; quantization errors
against a nearest-level search over the format's levels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebsp_jax.numerics import BitPattern, fit_scale, project, uniform
from ebsp_jax.numerics.tree import channel_axes
from ebsp_jax.search import sensitivity as sens_lib


def _mlp_params(key):
  k1, k2, k3 = jax.random.split(key, 3)
  return {"fc": {"kernel": jax.random.normal(k1, (4, 3)) * 0.7,
                 "bias": jax.random.normal(k2, (3,)) * 0.1},
          "head": {"kernel": jax.random.normal(k3, (3, 2)) * 0.7}}


def _mlp_loss(params, batch):
  h = jnp.tanh(batch["x"] @ params["fc"]["kernel"] + params["fc"]["bias"])
  logits = h @ params["head"]["kernel"]
  return jnp.mean(jax.nn.logsumexp(logits, -1)
                  - jnp.take_along_axis(logits, batch["y"][:, None], -1)[:, 0])


def _batches(key, sizes):
  out = []
  for i, n in enumerate(sizes):
    kx, ky = jax.random.split(jax.random.fold_in(key, i))
    out.append({"x": jax.random.normal(kx, (n, 4)), "y": jax.random.randint(ky, (n,), 0, 2)})
  return out


def _exact_block_traces(loss, params, layers):
  """Traces of the diagonal Hessian blocks of each layer's kernel, from jax.hessian."""
  out = []
  for l in layers:
    w = params[l]["kernel"]

    def f(wf, l=l, shape=w.shape):
      p = jax.tree_util.tree_map(lambda x: x, params)
      p[l] = dict(p[l], kernel=wf.reshape(shape))
      return loss(p)

    out.append(float(jnp.trace(jax.jit(jax.hessian(f))(w.ravel()))))
  return np.array(out)


def test_hutchinson_matches_the_exact_hessian_of_the_mean_loss():
  params = _mlp_params(jax.random.key(0))
  batches = _batches(jax.random.key(1), [7, 3])        # unequal sizes: example-weighted mean
  x = jnp.concatenate([b["x"] for b in batches])
  y = jnp.concatenate([b["y"] for b in batches])
  exact = _exact_block_traces(lambda p: _mlp_loss(p, {"x": x, "y": y}), params, ["fc", "head"])
  est = sens_lib.hessian_traces(_mlp_loss, params, batches, ["fc", "head"], num_probes=1000,
                                probe_chunk=250)
  assert est.method == "hessian" and est.num_examples == 10 and est.num_probes == 1000
  assert est.num_weights.tolist() == [12, 6]
  assert np.all(est.stderr > 0) and np.all(est.stderr < 0.1 * np.abs(exact))
  np.testing.assert_array_less(np.abs(est.trace - exact), 5 * est.stderr)


def test_hutchinson_is_exact_for_a_diagonal_hessian():
  d = {"a": jnp.arange(1.0, 7.0).reshape(2, 3), "b": jnp.array([[0.5, -2.0]])}
  params = {"a": {"kernel": jnp.ones((2, 3))}, "b": {"kernel": jnp.ones((1, 2))}}

  def loss(p, batch):
    del batch
    return 0.5 * sum(jnp.sum(d[k] * p[k]["kernel"] ** 2) for k in d)

  est = sens_lib.hessian_traces(loss, params, [{"x": np.zeros((1,))}], ["b", "a"], num_probes=4)
  np.testing.assert_allclose(est.trace, [-1.5, 21.0], rtol=1e-6)
  np.testing.assert_allclose(est.stderr, 0.0, atol=1e-6)


def test_fisher_matches_a_per_example_loop():
  params = _mlp_params(jax.random.key(2))
  batches = _batches(jax.random.key(3), [5, 2])
  want = np.zeros(2)
  n = 0
  grad = jax.jit(jax.grad(_mlp_loss))
  for b in batches:
    for j in range(b["x"].shape[0]):
      g = grad(params, {"x": b["x"][j:j + 1], "y": b["y"][j:j + 1]})
      want += [float(jnp.sum(g["fc"]["kernel"] ** 2)), float(jnp.sum(g["head"]["kernel"] ** 2))]
      n += 1
  est = sens_lib.fisher_traces(_mlp_loss, params, batches, ["fc", "head"])
  np.testing.assert_allclose(est.trace, want / n, rtol=1e-5)
  assert est.method == "fisher" and est.num_examples == 7


def test_unknown_layer_is_a_one_line_error():
  params = _mlp_params(jax.random.key(0))
  with pytest.raises(ValueError, match=r"^layer 'fc2' has no kernel in the parameters; "
                     r"layers: fc, head$"):
    sens_lib.hessian_traces(_mlp_loss, params, _batches(jax.random.key(1), [2]), ["fc2"])


def _nearest_level_error(w, fmt, scale):
  """Independent reference: nearest of the format's levels by exhaustive search."""
  levels = fmt.levels.astype(np.float64)
  y = np.asarray(w, np.float64) / np.asarray(scale, np.float64)
  q = levels[np.argmin(np.abs(y[..., None] - levels), axis=-1)]
  return float(np.sum((q * np.asarray(scale, np.float64) - w) ** 2))


@pytest.mark.parametrize("per_channel,fmts", [
    (True, [BitPattern(6, 3), uniform(4), BitPattern(5, 1)]), (False, [BitPattern(6, 3)])])
def test_quantization_error_is_the_nearest_level_error(per_channel, fmts):
  rng = np.random.default_rng(0)
  ws = [rng.normal(size=(3, 3, 2, 4)).astype(np.float32),
        rng.standard_t(3, size=(20, 5)).astype(np.float32)]
  err = sens_lib.quantization_error(ws, fmts, per_channel=per_channel)
  assert err.shape == (2, len(fmts))
  for i, w in enumerate(ws):
    for k, f in enumerate(fmts):
      scale = np.asarray(fit_scale(w, f, channel_axes(w, per_channel), num_iters=16))
      assert err[i, k] == pytest.approx(_nearest_level_error(w, f, scale), rel=1e-4)
  # A finer format of one family does better.
  finer = sens_lib.quantization_error(ws, [BitPattern(8, 3)], per_channel=per_channel)
  assert np.all(finer[:, 0] < err[:, 0])


def test_weights_on_the_grid_have_no_error():
  fmt = BitPattern(6, 3)
  levels = fmt.levels
  w = 0.25 * np.concatenate([levels, levels[::-1]]).reshape(-1, 1).astype(np.float32)
  assert sens_lib.quantization_error([w], [fmt])[0, 0] == 0.0


def test_sensitivity_matrix():
  est = sens_lib.TraceEstimate(("a", "b"), np.array([2.0, 9.0]), np.zeros(2), np.array([4, 3]),
                               10, 8, "hessian")
  out = sens_lib.sensitivity_matrix(est, np.array([[1.0, 2.0], [3.0, 0.5]]))
  np.testing.assert_allclose(out, [[0.5, 1.0], [9.0, 1.5]])


def test_loss_increase_quantizes_one_layer_at_a_time():
  params = _mlp_params(jax.random.key(4))
  batches = _batches(jax.random.key(5), [6, 2])
  fmts = [BitPattern(3, 1), uniform(8)]
  got = sens_lib.loss_increase(_mlp_loss, params, batches, ["head", "fc"], fmts)
  x = jnp.concatenate([b["x"] for b in batches])
  y = jnp.concatenate([b["y"] for b in batches])
  base = float(_mlp_loss(params, {"x": x, "y": y}))
  for i, l in enumerate(["head", "fc"]):
    for k, f in enumerate(fmts):
      w = params[l]["kernel"]
      scale = fit_scale(w, f, channel_axes(w), num_iters=16)
      q = dict(params, **{l: dict(params[l], kernel=project(w, f, scale))})
      assert got[i, k] == pytest.approx(float(_mlp_loss(q, {"x": x, "y": y})) - base, abs=1e-6)
  assert np.all(np.abs(got[:, 1]) < np.abs(got[:, 0]))      # 8-bit uniform hurts far less


def test_rank_correlation():
  a = np.array([1.0, 5.0, 2.0, 9.0])
  assert sens_lib.rank_correlation(a, a * 3 + 1) == pytest.approx(1.0)
  assert sens_lib.rank_correlation(a, -a) == pytest.approx(-1.0)
  assert sens_lib.rank_correlation(a, np.exp(a)) == pytest.approx(1.0)
