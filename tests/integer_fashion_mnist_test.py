"""Acceptance (issue 3 §2): integer mode vs fake-quant mode on the real Fashion-MNIST test set.

The test trains LeNet-5 itself (float, then fake-quant fine-tuning with weights projected to
``BitPattern(6, 3)`` per output channel and 8-bit activations), then runs the 10,000 test
images through

* fake-quant mode: the float model with ``quant.fake_quant_injection(8)`` and the projected
  weights ``tree_project(params, rule, scales)`` (float32 arithmetic), and
* integer mode: ``quant.to_integer(...)`` (integer-only: ``ebsp_jax.arith`` datapath, int32
  biases, integer requantization, integer ReLU/max-pool),

and checks:

1. identical top-1 prediction on >= 99.9% of the images;
2. the documented logit bound. Fake-quant and integer mode compute the same real function;
   they differ only where a float32 rounding error of the fake-quant path (or the 2**-31
   relative error of an integer multiplier) moves a value across a rounding boundary of an
   activation quantizer, i.e. by one level of that activation. So for each image, with
   ``d_i`` the level differences of the ``head`` input (captured in both modes),
   ``|Δlogit_j| <= s_act(head) * s_w(head)_j * Σ_i |d_i| |q_w,ij| + tol`` with
   ``tol = 1e-4 * (1 + |logit_j|)`` (float32 rounding of fake-quant's dense layer and the
   integer bias's fractional rounding). Where the head inputs agree (asserted for >= 99% of
   the images), this is ``|Δlogit| <= tol``.

Measured (2 CPU cores; printed with ``-s``): see the ``AGREEMENT`` line.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebsp_jax import BitPattern, make_rule, models, quant, tree_fake_quant, tree_fit_scale
from ebsp_jax import tree_project

DATA_DIR = "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2860, 0.3530
PATTERN = BitPattern(6, 3)
ACT_BITS = 8


def _load(split: str):
  from ebsp_jax.data import fashion_mnist  # pylint: disable=import-outside-toplevel
  try:
    images, labels = fashion_mnist.load(split, DATA_DIR)
  except FileNotFoundError as e:
    pytest.skip(str(e))
  x = (np.asarray(images, np.float32) / 255.0 - MEAN) / STD
  return x, np.asarray(labels, np.int32)


def _train(float_steps: int = 400, quant_steps: int = 150, batch: int = 128, seed: int = 0):
  """Float training, projection to 6b(L3), fake-quant fine-tuning. Returns everything needed."""
  x_train, y_train = _load("train")
  rng = np.random.default_rng(seed)
  model = models.get_model("lenet5", num_classes=10, **quant.fake_quant_injection(ACT_BITS))
  float_model = models.get_model("lenet5", num_classes=10)
  variables = model.init(jax.random.key(seed), jnp.zeros((1, 28, 28, 1)), train=False)
  params = variables["params"]
  rule = make_rule(PATTERN)
  opt = optax.adam(2e-3)

  def loss_fn(p, stats, xb, yb, quantized: bool, scales):
    if quantized:
      p = tree_fake_quant(p, rule, scales)
      logits, upd = model.apply({"params": p, "quant_stats": stats}, xb, train=True,
                                mutable=["quant_stats"])
      stats = upd["quant_stats"]
    else:
      logits = float_model.apply({"params": p}, xb, train=True)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
    return loss, stats

  def make_step(quantized: bool):
    @jax.jit
    def step(p, opt_state, stats, scales, xb, yb):
      (loss, stats), g = jax.value_and_grad(loss_fn, has_aux=True)(p, stats, xb, yb, quantized,
                                                                    scales)
      updates, opt_state = opt.update(g, opt_state, p)
      return optax.apply_updates(p, updates), opt_state, stats, loss
    return step

  def batches(n):
    for _ in range(n):
      idx = rng.integers(0, len(x_train), batch)
      yield x_train[idx], y_train[idx]

  stats = variables["quant_stats"]
  opt_state = opt.init(params)
  step = make_step(False)
  scales = tree_fit_scale(params, rule)
  for xb, yb in batches(float_steps):
    params, opt_state, stats, _ = step(params, opt_state, stats, scales, xb, yb)
  # Hard projection (per-channel scales fitted once), then fake-quant fine-tuning (STE).
  scales = tree_fit_scale(params, rule)
  params = tree_project(params, rule, scales)
  step = make_step(True)
  for xb, yb in batches(quant_steps):
    params, opt_state, stats, _ = step(params, opt_state, stats, scales, xb, yb)
  params = tree_project(params, rule, scales)
  return model, {"params": params, "quant_stats": stats}, rule, scales


def _run_both(model, variables, rule, scales, x):
  """Fake-quant and integer logits plus the head's integer input in both modes."""
  fq_apply = jax.jit(lambda v, xb: model.apply(v, xb, train=False, mutable=["intermediates"]))
  imodel = quant.to_integer("lenet5", variables, weight_rule=rule, weight_scales=scales,
                            activation_bits=ACT_BITS)
  fq_logits, int_logits, fq_head, int_head = [], [], [], []
  bs = 2000
  for i in range(0, len(x), bs):
    xb = jnp.asarray(x[i:i + bs])
    logits, inter = fq_apply(variables, xb)
    fq_logits.append(np.asarray(logits))
    fq_head.append(np.asarray(inter["intermediates"]["head"]["act"]["levels"][0]))
    il, cap = imodel.apply(xb, capture=True)
    int_logits.append(np.asarray(il))
    int_head.append(np.asarray(cap["head"]["input"]))
  cat = np.concatenate
  return imodel, cat(fq_logits), cat(int_logits), cat(fq_head), cat(int_head)


@pytest.fixture(scope="module")
def trained():
  t0 = time.time()
  model, variables, rule, scales = _train()
  x_test, y_test = _load("test")
  imodel, fq, it, fq_head, int_head = _run_both(model, variables, rule, scales, x_test)
  return dict(variables=variables, scales=scales, imodel=imodel, fq=fq, it=it, fq_head=fq_head,
              int_head=int_head, y=y_test, seconds=time.time() - t0)


def test_integer_matches_fake_quant_top1(trained):
  fq, it, y = trained["fq"], trained["it"], trained["y"]
  assert fq.shape == it.shape == (10000, 10)
  same = np.mean(fq.argmax(-1) == it.argmax(-1))
  acc_fq = np.mean(fq.argmax(-1) == y)
  acc_int = np.mean(it.argmax(-1) == y)
  head_same = np.mean(np.all(trained["fq_head"] == trained["int_head"], axis=-1))
  print(f"\nAGREEMENT lenet5 6b(L3)/a8 on Fashion-MNIST test (10k): top1 identical {same:.4%}, "
        f"head input identical {head_same:.4%}, max |Δlogit| {np.abs(fq - it).max():.3g} "
        f"(logit range {np.abs(fq).max():.3g}); accuracy fake-quant {acc_fq:.4f} integer "
        f"{acc_int:.4f}; float ops {trained['imodel'].float_ops}; {trained['seconds']:.1f} s")
  assert acc_fq > 0.75, "the quantized network did not train"
  assert same >= 0.999
  assert head_same >= 0.99
  assert trained["imodel"].float_ops == []  # integer-only apart from input/output


def test_logit_difference_within_documented_bound(trained):
  fq, it = trained["fq"], trained["it"]
  layer = trained["imodel"].layers["head"]
  qw = np.abs(np.asarray(trained["imodel"].weights["head"], np.float64))      # (84, 10)
  d = np.abs(trained["fq_head"].astype(np.float64) - trained["int_head"])      # (N, 84)
  bound = layer.act_scale * layer.weight_scale.astype(np.float64) * (d @ qw)  # (N, 10)
  bound += 1e-4 * (1.0 + np.abs(fq))
  excess = np.abs(fq - it) - bound
  assert np.all(excess <= 0), f"max excess {excess.max()}"
