"""Acceptance (issue 15): post-training quantization of unmodified models on real Fashion-MNIST.

Two models that are not in the registry and declare no hook field -- a linen CNN (conv, batch
norm, ReLU, max and average pooling, flatten, dense) and an nnx MLP -- are trained here in
float for a few hundred steps, then go through ``ebsp_jax.ptq.quantize`` (no training:
calibration on 512 training images) with EBSP ``6b(L3)`` and 8-bit uniform weights, 8-bit
activations. Checked:

1. ``qm.integer`` (the bit-exact integer datapath) gives the same top-1 prediction as
   ``qm.fake_quant`` on >= 99.9% of the test images (default suite: the first 2,000 images;
   slow suite: all 10,000, with the figures printed as ``PTQ_AGREEMENT`` lines);
2. the integer program exported to ONNX (``ptq.export_onnx``) computes in ONNX Runtime the
   same int32 ``int_logits`` as ``qm.integer_codes`` on real test images, bit for bit, for
   both models and the registry's LeNet-5.

Run ``pytest -m slow tests/ptq_fashion_mnist_test.py -s`` for the full-set figures
(recorded in docs/ptq.md).
"""

from __future__ import annotations

import os
import tempfile
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ebsp_jax import BitPattern, models, ptq, uniform

DATA_DIR = "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2860, 0.3530
PATTERNS = {"6b(L3)": BitPattern(6, 3), "u8": uniform(8)}


class LinenCNN(nn.Module):
  """An ordinary linen CNN: no hook fields."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(16, (3, 3))(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
    x = nn.max_pool(x, (2, 2), (2, 2))
    x = nn.relu(nn.Conv(32, (3, 3), padding="VALID")(x))
    x = nn.avg_pool(x, (2, 2), (2, 2))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(64)(x))
    return nn.Dense(10)(x)


class NnxMLP(nnx.Module):
  """An ordinary nnx MLP on flattened images in [0, 1]."""

  def __init__(self, rngs: nnx.Rngs):
    self.fc1 = nnx.Linear(784, 128, rngs=rngs)
    self.fc2 = nnx.Linear(128, 64, rngs=rngs)
    self.head = nnx.Linear(64, 10, rngs=rngs)

  def __call__(self, x):
    x = x.reshape((x.shape[0], -1))
    return self.head(nnx.relu(self.fc2(nnx.relu(self.fc1(x)))))


def _load(split: str):
  from ebsp_jax.data import fashion_mnist  # pylint: disable=import-outside-toplevel
  try:
    images, labels = fashion_mnist.load(split, DATA_DIR)
  except FileNotFoundError as e:
    pytest.skip(str(e))
  return np.asarray(images, np.float32) / 255.0, np.asarray(labels, np.int32)


def _normalize(x):
  return (x - MEAN) / STD


def train_linen(model, x, y, steps: int, seed: int = 0, batch: int = 128):
  """Adam float training of a linen model with a ``train`` argument; returns its variables."""
  rng = np.random.default_rng(seed)
  variables = model.init(jax.random.key(seed), jnp.zeros((1,) + x.shape[1:]), train=False)
  params, stats = variables["params"], variables.get("batch_stats", {})
  opt = optax.adam(2e-3)
  opt_state = opt.init(params)

  @jax.jit
  def step(params, stats, opt_state, xb, yb):
    def loss_fn(p):
      v = {"params": p, **({"batch_stats": stats} if stats else {})}
      logits, upd = model.apply(v, xb, train=True, mutable=["batch_stats"])
      return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean(), upd
    (_, upd), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = opt.update(g, opt_state, params)
    return optax.apply_updates(params, updates), upd.get("batch_stats", {}), opt_state

  for _ in range(steps):
    idx = rng.integers(0, len(x), batch)
    params, stats, opt_state = step(params, stats, opt_state, x[idx], y[idx])
  return {"params": params, **({"batch_stats": stats} if stats else {})}


def train_nnx(model, x, y, steps: int, seed: int = 0, batch: int = 128):
  """Adam float training of an nnx model in place."""
  rng = np.random.default_rng(seed)
  opt = nnx.Optimizer(model, optax.adam(2e-3), wrt=nnx.Param)

  @nnx.jit
  def step(model, opt, xb, yb):
    def loss_fn(m):
      return optax.softmax_cross_entropy_with_integer_labels(m(xb), yb).mean()
    grads = nnx.grad(loss_fn)(model)
    opt.update(model, grads)

  for _ in range(steps):
    idx = rng.integers(0, len(x), batch)
    step(model, opt, x[idx], y[idx])
  return model


def _predict(fn, x, bs: int = 2000):
  return np.concatenate([np.asarray(fn(jnp.asarray(x[i:i + bs]))) for i in range(0, len(x), bs)])


@pytest.fixture(scope="module")
def data():
  x_train, y_train = _load("train")
  x_test, y_test = _load("test")
  return x_train, y_train, x_test, y_test


@pytest.fixture(scope="module")
def trained(data):
  """The two unmodified models, trained in float (the same in the fast and the slow tests)."""
  x_train, y_train, _, _ = data
  steps = 300
  t0 = time.time()
  cnn = LinenCNN()
  cnn_vars = train_linen(cnn, _normalize(x_train), y_train, steps)
  mlp = train_nnx(NnxMLP(nnx.Rngs(0)), x_train, y_train, steps)
  calib = x_train[np.random.default_rng(1).choice(len(x_train), 512, replace=False)]
  return dict(cnn=(cnn, cnn_vars, _normalize), mlp=(mlp, None, lambda v: v), calib=calib,
              seconds=time.time() - t0)


def _quantize(trained, name: str, pattern_name: str, calibration: str = "mse"):
  model, variables, prep = trained[name]
  return ptq.quantize(model, variables, prep(trained["calib"]), weights=PATTERNS[pattern_name],
                      activation_bits=8, calibration=calibration), prep


def _agreement(qm, prep, x, y):
  fq = _predict(qm.fake_quant, prep(x))
  it = _predict(qm.integer, prep(x))
  fl = _predict(qm.float_model, prep(x))
  top = lambda a: np.argmax(a, axis=1)  # noqa: E731
  return dict(agree=float(np.mean(top(fq) == top(it))), n=len(x),
              identical_logits=float(np.mean(np.all(np.abs(fq - it) <= 1e-4 * (1 + np.abs(fq)),
                                                    axis=1))),
              max_dlogit=float(np.max(np.abs(fq - it))), max_logit=float(np.max(np.abs(fq))),
              acc_float=float(np.mean(top(fl) == y)), acc_fake=float(np.mean(top(fq) == y)),
              acc_int=float(np.mean(top(it) == y)))


@pytest.mark.parametrize("name", ["cnn", "mlp"])
def test_integer_agrees_with_fake_quant_on_a_test_subset(trained, data, name):
  _, _, x_test, y_test = data
  qm, prep = _quantize(trained, name, "6b(L3)")
  r = _agreement(qm, prep, x_test[:2000], y_test[:2000])
  print(f"PTQ_AGREEMENT_SUBSET {name} 6b(L3) mse {r}")
  assert r["agree"] >= 0.999, r
  # PTQ keeps the trained model useful: within 5 points of its float accuracy.
  assert r["acc_float"] > 0.75 and r["acc_fake"] > r["acc_float"] - 0.05, r


def _onnx_codes(qm, x, path):
  import onnxruntime as ort  # pylint: disable=import-outside-toplevel
  ptq.export_onnx(qm, x[:8], path)
  sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
  levels = np.asarray(qm.quantize_input(jnp.asarray(x)))
  return sess.run(["int_logits"], {"input_levels": levels})[0], np.asarray(
      qm.integer_codes(jnp.asarray(x)))


@pytest.mark.parametrize("name,pattern_name", [("cnn", "6b(L3)"), ("mlp", "u8")])
def test_onnx_runtime_is_bit_identical_on_real_images(trained, data, name, pattern_name):
  _, _, x_test, _ = data
  qm, prep = _quantize(trained, name, pattern_name, calibration="minmax")
  with tempfile.TemporaryDirectory() as d:
    got, want = _onnx_codes(qm, prep(x_test[:500]), os.path.join(d, "m.onnx"))
  assert got.dtype == want.dtype == np.int32 and got.shape == want.shape == (500, 10)
  np.testing.assert_array_equal(got, want)
  # The int32 codes are the logits: dequantized (m * q + o in float32; XLA may fuse it into
  # one FMA in one program and not the other) they are integer(x).
  np.testing.assert_allclose(np.asarray(qm.dequantize(jnp.asarray(want))),
                             np.asarray(qm.integer(jnp.asarray(prep(x_test[:500])))),
                             rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("pattern_name",
                         ["6b(L3)", pytest.param("u8", marks=pytest.mark.slow)])
def test_onnx_bit_identical_for_registry_lenet5(data, pattern_name):
  x_train, _, x_test, _ = data
  model = models.get_model("lenet5", num_classes=10)
  x = _normalize(x_test[:300])
  variables = model.init(jax.random.key(3), jnp.asarray(x[:1]), train=False)
  qm = ptq.quantize(model, variables, _normalize(x_train[:256]), weights=PATTERNS[pattern_name])
  with tempfile.TemporaryDirectory() as d:
    got, want = _onnx_codes(qm, x, os.path.join(d, "lenet5.onnx"))
  np.testing.assert_array_equal(got, want)


@pytest.mark.slow
def test_full_test_set_agreement_and_onnx(trained, data):
  """All 10,000 test images, both models, both weight formats, two calibrations; the ONNX
  graph on all 10,000 images too. Prints ``PTQ_AGREEMENT`` lines (docs/ptq.md)."""
  _, _, x_test, y_test = data
  print(f"\ntraining (both models, 300 steps each): {trained['seconds']:.0f} s")
  for name in ("cnn", "mlp"):
    for pattern_name in PATTERNS:
      for calibration in ("mse", "minmax"):
        t0 = time.time()
        qm, prep = _quantize(trained, name, pattern_name, calibration)
        r = _agreement(qm, prep, x_test, y_test)
        with tempfile.TemporaryDirectory() as d:
          got, want = _onnx_codes(qm, prep(x_test), os.path.join(d, "m.onnx"))
        r["onnx_identical"] = bool(np.array_equal(got, want))
        print(f"PTQ_AGREEMENT {name} {pattern_name} {calibration} {r} "
              f"({time.time() - t0:.0f} s)")
        assert r["agree"] >= 0.999, r
        assert r["onnx_identical"], (name, pattern_name, calibration)
