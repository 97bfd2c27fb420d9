# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Bring your own model: post-training quantization, integer datapath, ONNX
#
# Notebooks 01–03 train the registry's models with the project's hooks. This one starts from
# an **ordinary Flax model** — written as anyone writes one, with `nn.Conv`, `nn.Dense`,
# `nn.BatchNorm`, pooling, no hook fields — trained in float, and quantizes it **after
# training**, without a single gradient step:
#
# 1. `ebsp_jax.ptq.quantize(model, variables, calibration_batches, weights=BitPattern(6, 3))`
#    puts every kernel on the bit-sparsity grid (per-channel scales from `fit_scale`) and
#    calibrates every layer input to 8 bits on a few hundred images (`minmax`, `percentile`
#    or `mse`);
# 2. `qm.fake_quant(x)` runs the quantized model in float arithmetic, `qm.integer(x)` through
#    the bit-exact integer datapath (the emulated EBSP hardware);
# 3. `ptq.export_onnx` writes the integer program as an integer-only ONNX graph, which ONNX
#    Runtime runs to the same int32 logits, bit for bit; `ptq.export_jax` serializes it with
#    `jax.export`.
#
# The same works for an nnx model (`variables=None`) and for torchvision's pretrained
# ImageNet weights (`models.load_torchvision`, last section).

# %% tags=["parameters"]
# Budgets. `EBSP_NOTEBOOK_FAST=1` (set by `tests/notebooks_test.py`) selects the small ones;
# the defaults are the full tutorial.
import os

FAST = os.environ.get("EBSP_NOTEBOOK_FAST", "0") == "1"
TRAIN_STEPS = 60 if FAST else 800        # float training of the model we bring
BATCH_SIZE = 128
CALIBRATION_EXAMPLES = 256 if FAST else 512
EVAL_EXAMPLES = 1000 if FAST else 10000
ONNX_EXAMPLES = 200 if FAST else 2000
SWEEP = not FAST                         # calibration x weight-format table

# %%
# %matplotlib inline
import tempfile
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import onnxruntime as ort
import optax
from flax import nnx

from ebsp_jax import BitPattern, make_rule, models, ptq, uniform
from ebsp_jax.data import fashion_mnist

T0 = time.time()
x_train, y_train = fashion_mnist.load("train")
x_test, y_test = fashion_mnist.load("test")
MEAN, STD = 0.2860, 0.3530
prep = lambda im: ((np.asarray(im, np.float32) / 255.0) - MEAN) / STD  # noqa: E731
x_test, y_test = prep(x_test[:EVAL_EXAMPLES]), y_test[:EVAL_EXAMPLES]
print("train", x_train.shape, "test", x_test.shape)

# %% [markdown]
# ## 1. The model we bring, trained in float
#
# Nothing here refers to `ebsp_jax`: a plain linen CNN and a plain Adam loop.

# %%
class MyCNN(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(16, (3, 3))(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
    x = nn.max_pool(x, (2, 2), (2, 2))
    x = nn.relu(nn.Conv(32, (3, 3), padding="VALID")(x))
    x = nn.avg_pool(x, (2, 2), (2, 2))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(64)(x))
    return nn.Dense(10)(x)


model = MyCNN()
variables = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), train=False)
opt = optax.adam(2e-3)
state = (variables["params"], variables["batch_stats"], opt.init(variables["params"]))


@jax.jit
def step(state, xb, yb):
  params, stats, opt_state = state

  def loss_fn(p):
    logits, upd = model.apply({"params": p, "batch_stats": stats}, xb, train=True,
                              mutable=["batch_stats"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean(), upd

  (loss, upd), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
  updates, opt_state = opt.update(g, opt_state, params)
  return (optax.apply_updates(params, updates), upd["batch_stats"], opt_state), loss


rng = np.random.default_rng(0)
t = time.time()
for i in range(TRAIN_STEPS):
  idx = rng.integers(0, len(x_train), BATCH_SIZE)
  state, loss = step(state, prep(x_train[idx]), y_train[idx])
variables = {"params": state[0], "batch_stats": state[1]}
print(f"{TRAIN_STEPS} steps in {time.time() - t:.0f} s, last loss {float(loss):.3f}")

# %% [markdown]
# ## 2. Post-training quantization
#
# `ptq.quantize` reaches every `nn.Conv` / `nn.Dense` of the unmodified model through
# `flax.linen.intercept_methods` (nnx models: through their layers' `dot_general` /
# `conv_general_dilated` attributes). The calibration batches are plain float images from the
# training set. `qm.summary()` lists what each layer got: the weight format and its
# per-channel scales, the input format (unsigned after a ReLU) and the calibrated clip.

# %%
calib = prep(x_train[rng.choice(len(x_train), CALIBRATION_EXAMPLES, replace=False)])
t = time.time()
qm = ptq.quantize(model, variables, calib, weights=BitPattern(6, 3), activation_bits=8,
                  calibration="mse")
print(f"quantized in {time.time() - t:.1f} s\n")
print(qm.summary())


# %%
def predict(fn, x, bs=1000):
  return np.concatenate([np.argmax(np.asarray(fn(jnp.asarray(x[i:i + bs]))), axis=1)
                         for i in range(0, len(x), bs)])


def report(qm, label):
  p_float, p_fake, p_int = (predict(f, x_test) for f in (qm.float_model, qm.fake_quant,
                                                           qm.integer))
  acc = lambda p: float(np.mean(p == y_test))  # noqa: E731
  row = dict(label=label, float=acc(p_float), fake_quant=acc(p_fake), integer=acc(p_int),
             agreement=float(np.mean(p_fake == p_int)))
  print(f"{label:<22} float {row['float']:.4f}  fake-quant {row['fake_quant']:.4f}  "
        f"integer {row['integer']:.4f}  integer = fake-quant top-1 on "
        f"{100 * row['agreement']:.2f}% of {len(x_test)}")
  return row


rows = [report(qm, "6b(L3) / mse")]

# %% [markdown]
# `integer` is the bit-exact integer datapath of `ebsp_jax.quant.lowering`: conv/dense through
# `ebsp_jax.arith` (the LUT + shift datapath of EBSP), batch norm and biases folded into int32
# constants, ReLU as an integer max, pooling on integers, requantization with an integer
# multiplier and shift. Its top-1 agrees with the fake-quant model's except where a float32
# rounding moves an activation across a rounding boundary (`ebsp_jax/quant/README.md`).
#
# ## 3. Calibration methods, weight formats, per-layer overrides
#
# A rule from `make_rule` gives layers their own format — here the first conv and the
# classifier in 8-bit uniform, the paper's usual exemption.

# %%
first_last = make_rule(BitPattern(6, 3), overrides=[("^Conv_0/", uniform(8)),
                                                    ("^Dense_1/", uniform(8))])
configs = [("6b(L3) first/last u8", dict(weights=first_last, calibration="mse"))]
if SWEEP:
  configs += [(f"{name} / {cal}", dict(weights=w, calibration=cal))
              for name, w in (("6b(L3)", BitPattern(6, 3)), ("4b(L2)", BitPattern(4, 2)),
                              ("u8", uniform(8)))
              for cal in ("minmax", "percentile", "mse") if (name, cal) != ("6b(L3)", "mse")]
for label, kw in configs:
  rows.append(report(ptq.quantize(model, variables, calib, **kw), label))

# %%
fig, ax = plt.subplots(figsize=(9, 0.35 * len(rows) + 1))
labels = [r["label"] for r in rows]
ax.barh(labels, [r["fake_quant"] for r in rows], color="tab:blue", label="fake-quant")
ax.scatter([r["integer"] for r in rows], labels, color="k", zorder=3, label="integer datapath")
ax.axvline(rows[0]["float"], color="tab:red", ls="--", label="float")
lo = min(min(r["fake_quant"], r["integer"]) for r in rows)
hi = max(max(r["fake_quant"], r["integer"], r["float"]) for r in rows)
ax.set_xlim(max(0.0, lo - 0.03), min(1.0, hi + 0.02))
ax.set_xlabel(f"top-1 accuracy, Fashion-MNIST test ({len(x_test)} images)")
ax.invert_yaxis()
ax.legend(loc="lower right")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. The integer program in ONNX Runtime
#
# `ptq.export_onnx` translates the integer program — from the quantized input
# (`qm.quantize_input(x)`, int32 levels) to the int32 logits before dequantization
# (`qm.integer_codes(x)`) — into ONNX operators on integers only: `ConvInteger` /
# `MatMulInteger` for the layers, `Mul`/`Add`/`Div`/`Mod` for the requantizers' multiply and
# rounding shift, `Max`/`Min` for ReLU and clamps, strided `Slice` + `Max`/`Add` for pooling.
# ONNX Runtime is an independent engine: identical integers mean the exported program *is*
# the emulated one.

# %%
with tempfile.TemporaryDirectory() as d:
  path = os.path.join(d, "my_cnn_int.onnx")
  proto = ptq.export_onnx(qm, x_test[:8], path)
  ops = sorted({n.op_type for n in proto.graph.node})
  print(f"{len(proto.graph.node)} nodes, {os.path.getsize(path) / 1024:.0f} KiB; ops: "
        f"{', '.join(ops)}")
  session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
  xs = jnp.asarray(x_test[:ONNX_EXAMPLES])
  levels = np.asarray(qm.quantize_input(xs))
  onnx_logits = session.run(["int_logits"], {"input_levels": levels})[0]
emulated = np.asarray(qm.integer_codes(xs))
print(f"ONNX Runtime int_logits == emulation on {ONNX_EXAMPLES} test images:",
      np.array_equal(onnx_logits, emulated))
print("dequantized they are qm.integer(x):",
      np.allclose(np.asarray(qm.dequantize(jnp.asarray(onnx_logits))), np.asarray(qm.integer(xs)),
                  rtol=1e-6, atol=1e-6))

# %% [markdown]
# `jax.export` serializes the same integer model (the CPU oneDNN call is swapped for XLA's
# integer ops, which are bit-identical, so the artifact is portable):

# %%
exported = ptq.export_jax(qm, x_test[:100])
blob = exported.serialize()
restored = jax.export.deserialize(blob)
print(f"{len(blob) / 1024:.0f} KiB of StableHLO; reloaded logits identical:",
      np.array_equal(np.asarray(restored.call(jnp.asarray(x_test[:100]))),
                     np.asarray(qm.integer(jnp.asarray(x_test[:100])))))

# %% [markdown]
# ## 5. An nnx model
#
# nnx models carry their own state: pass `variables=None`. The model object is not modified
# (the hooks go into a clone, in eval mode).

# %%
class MyMLP(nnx.Module):
  def __init__(self, rngs):
    self.fc1 = nnx.Linear(784, 128, rngs=rngs)
    self.head = nnx.Linear(128, 10, rngs=rngs)

  def __call__(self, x):
    return self.head(nnx.relu(self.fc1(x.reshape((x.shape[0], -1)))))


mlp = MyMLP(nnx.Rngs(0))
mlp_opt = nnx.Optimizer(mlp, optax.adam(2e-3), wrt=nnx.Param)


@nnx.jit
def mlp_step(m, o, xb, yb):
  grads = nnx.grad(lambda m: optax.softmax_cross_entropy_with_integer_labels(
      m(xb), yb).mean())(m)
  o.update(m, grads)


for i in range(TRAIN_STEPS):
  idx = rng.integers(0, len(x_train), BATCH_SIZE)
  mlp_step(mlp, mlp_opt, prep(x_train[idx]), y_train[idx])
rows.append(report(ptq.quantize(mlp, None, calib, weights=BitPattern(6, 3)), "nnx MLP 6b(L3)"))

# %% [markdown]
# ## 6. Pretrained ImageNet weights
#
# `models.load_torchvision(name, path)` reads a torchvision `state_dict` saved with
# `safetensors` (on a machine with torch: `safetensors.torch.save_file(
# torchvision.models.resnet50(weights="IMAGENET1K_V2").state_dict(), "resnet50.safetensors")`)
# into the registry's `resnet18`, `resnet50`, `mobilenet_v2`, `alexnet` or `vgg16` — no torch
# and no download here. Then the same three lines quantize it:
#
# ```python
# model, variables = models.load_torchvision("resnet50", "resnet50.safetensors")
# qm = ptq.quantize(model, variables, calibration_images, weights=BitPattern(6, 3))
# top1 = (qm.integer(x).argmax(-1) == labels).mean()
# ```
#
# (`experiments/imagenet.py --pretrained_torchvision=PATH --ptq` does this on ImageNet.) The
# conversion follows torchvision's layouts tensor by tensor; the expected tensors:

# %%
_, expected = models.torchvision.model_and_shapes("resnet50")
for key in list(expected)[:6] + ["layer4.2.conv3.weight", "fc.weight"]:
  print(f"{key:<28} {expected[key]}")
print(f"... {len(expected)} tensors; images NHWC, RGB, normalised with mean "
      f"{models.IMAGENET_MEAN} and std {models.IMAGENET_STD}")
print(f"total {time.time() - T0:.0f} s")

# %% [markdown]
# **Summary.** An unmodified Flax model went onto the 6-bit, 3-long bit-sparsity grid after
# training, ran on the emulated integer datapath with the fake-quant model's predictions, and
# left Python as an integer-only ONNX graph that ONNX Runtime runs to the same integers. The
# full-test-set agreement figures and the ONNX Runtime checks are recorded in `docs/ptq.md`.
