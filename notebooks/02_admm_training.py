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
# # 02 · Evolving the weights onto the pattern: ADMM training
#
# Projecting a trained network onto a bit sparsity pattern after the fact (notebook 01) costs
# accuracy that grows as the pattern shortens. EBSP *evolves* the weights onto the grid during
# training with ADMM (Leng et al., AAAI 2018): minimise the loss `f(W)` subject to `W ∈ C`,
# the pattern grid with a per-channel scale, by alternating
#
# * **W-step** (every step): an optimizer step on `f(W) + (ρ/2)||W − Z + U||²`, with the
#   forward pass computed with the *projected* weights (straight-through estimator);
# * **Z-step** (every `k` steps): `Z = Proj_C(W + U)` with a refitted scale, then the dual
#   update `U ← U + W − Z`; ρ grows so the pull toward the grid strengthens.
#
# In `ebsp_jax` this is an `optax` transformation, `ebsp_jax.admm.admm(rule, rho,
# update_every)`, chained before the optimizer. This notebook trains LeNet-5 on Fashion-MNIST
# with it and watches the weights evolve; then it runs the result in fake-quant and in integer
# (emulated hardware) mode and dumps one layer's golden vectors for RTL verification.
# `experiments/fashion_mnist.py` runs the same pipeline at full scale with checkpoints.

# %% tags=["parameters"]
# Budgets. `EBSP_NOTEBOOK_FAST=1` (set by `tests/notebooks_test.py`) selects the small ones;
# the defaults are the full tutorial.
import os

FAST = os.environ.get("EBSP_NOTEBOOK_FAST", "0") == "1"
PATTERN_BITS, PATTERN_LENGTH = 6, 3      # the weight format: the paper's "6-bit (3)"
ACT_BITS = 8                             # activations: uniform 8-bit, one scale per tensor
BATCH_SIZE = 32 if FAST else 128
FLOAT_STEPS = 80 if FAST else 1500       # plain training first
ADMM_STEPS = 80 if FAST else 1500        # then ADMM
UPDATE_EVERY = 10 if FAST else 50        # W-steps between Z-steps (k)
# rho <- min(RHO_GROWTH * rho, RHO_MAX) at every Z-step
RHO_INIT, RHO_GROWTH, RHO_MAX = (0.3, 1.6, 100.0) if FAST else (0.05, 1.2, 100.0)
SNAPSHOTS = 4                            # weight histograms recorded during ADMM
TRAIN_EXAMPLES = 8192 if FAST else 60000
EVAL_EXAMPLES = 1000 if FAST else 10000
INT_EVAL_BATCHES = 1 if FAST else None   # test batches (of 500) run in integer mode

# %%
# %matplotlib inline
import functools
import tempfile
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from ebsp_jax import (BitPattern, admm, data, encode, make_rule, models, pattern_stats, quant,
                      quantize, tree_project)
from ebsp_jax.train import TrainState, train_step
from ebsp_jax.train.evaluation import pattern_telemetry

T0 = time.time()
PATTERN = BitPattern(PATTERN_BITS, PATTERN_LENGTH)
print("pattern", PATTERN, "magnitudes", PATTERN.magnitudes.tolist())

# %% [markdown]
# ## 1. Data and a fake-quant model
#
# `quant.fake_quant_injection(8)` plugs into Flax's `dot_general_cls` / `conv_general_dilated_cls`
# hooks of every layer: each conv/dense fake-quantizes its input activation to 8 bits with a
# scale calibrated by an EMA of the batch range (kept in the `quant_stats` collection). The
# weights are quantized outside the model, by ADMM. The same model definition later runs in
# integer mode.

# %%
train_ds = data.get_dataset("fashion_mnist", "train", batch_size=BATCH_SIZE, seed=0,
                            augment=False, num_examples=TRAIN_EXAMPLES, num_epochs=None,
                            num_threads=0)
test_ds = data.get_dataset("fashion_mnist", "test", batch_size=500,
                           num_examples=EVAL_EXAMPLES, num_threads=0)
test_batches = [(jnp.asarray(b["image"]), jnp.asarray(b["label"])) for b in test_ds]
train_iter = iter(train_ds)

model = models.get_model("lenet5", num_classes=10, **quant.fake_quant_injection(ACT_BITS))
# One jitted init; the "rbg" PRNG compiles much faster than threefry on CPU.
variables = jax.jit(lambda k, x: model.init(k, x, train=False))(
    jax.random.key(0, impl="rbg"), test_batches[0][0][:1])
print("collections:", list(variables), "| quant_stats of conv1:",
      jax.tree.map(float, variables["quant_stats"]["conv1"]["act"]))

@jax.jit
def correct(params, model_state, image, label):
    logits = model.apply({"params": params, **model_state}, image, train=False)
    return jnp.sum(logits.argmax(-1) == label)

def accuracy(params, model_state):
    n = sum(int(correct(params, model_state, x, y)) for x, y in test_batches)
    return n / sum(len(y) for _, y in test_batches)


# %% [markdown]
# ## 2. Float pre-training
#
# `ebsp_jax.train.train_step` is the trainer's pure step function: it takes a `TrainState`,
# a batch, the model's `apply` and an optax optimizer, updates the mutable collections
# (`quant_stats` here) and returns metrics. We jit it with the optimizer bound.

# %%
def make_step(tx, straight_through):
    return jax.jit(functools.partial(train_step, apply_fn=model.apply, tx=tx,
                                     straight_through=straight_through))

float_tx = optax.adam(2e-3)
state = TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                   model_state={"quant_stats": variables["quant_stats"]},
                   opt_state=float_tx.init(variables["params"]),
                   rng=jax.random.key(1, impl="rbg"), phase="float")
float_step = make_step(float_tx, straight_through=False)
t = time.time()
for i in range(FLOAT_STEPS):
    state, m = float_step(state, next(train_iter))
float_acc = accuracy(state.params, state.model_state)
print(f"{FLOAT_STEPS} float steps in {time.time() - t:.1f} s: loss {float(m['loss']):.3f}, "
      f"test accuracy {100 * float_acc:.2f}% (float weights, 8-bit activations)")

rule = make_rule(PATTERN)      # every conv/dense kernel in 6b(L3); biases stay float
ptq_acc = accuracy(tree_project(state.params, rule), state.model_state)
print(f"projected onto {PATTERN} without retraining: {100 * ptq_acc:.2f}%")

# %% [markdown]
# ## 3. ADMM
#
# The ADMM transformation goes *before* Adam in the chain, so the penalty gradient
# `ρ (W − Z + U)` is preconditioned like the loss gradient. `straight_through=True` makes the
# step compute the forward pass with `admm.straight_through(params, opt_state)`: the weights
# projected with the scales of the last Z-step. ρ follows `admm.geometric_rho`.
#
# ρ must grow large enough for the penalty to dominate the loss gradient near the end
# (Adam normalises gradient magnitudes, so what counts is which term wins the sign).
# We log, every step, ρ and the residuals of the last Z-step (primal `||W − Z||`, dual
# `ρ ||Z − Z_prev||`), and at a few snapshots the trainer's `pattern_telemetry`: the share of
# weights within 0.05 (in units of the scale) of a grid level (`near_grid`), the share whose
# nearest level is already Z's (`z_agreement`), and a histogram of one layer's weights.

# %%
admm_lr = optax.cosine_decay_schedule(5e-4, ADMM_STEPS)
admm_tx = optax.chain(
    admm.admm(rule, rho=admm.geometric_rho(RHO_INIT, RHO_GROWTH, max_value=RHO_MAX),
              update_every=UPDATE_EVERY),
    optax.adam(admm_lr))
state = state.replace(opt_state=admm_tx.init(state.params), phase="admm")
admm_step = make_step(admm_tx, straight_through=True)

@jax.jit
def telemetry(params, opt_state):
    st = admm.find_admm_states(opt_state)[0]
    return pattern_telemetry(params, rule, admm.tree_scales(params, opt_state), PATTERN, st.z)

LAYER = "fc1"
def layer_levels(params, opt_state):
    # fc1's weights in units of its per-channel scale (levels are integers on this axis).
    w = params[LAYER]["kernel"]
    return np.asarray(w / admm.tree_scales(params, opt_state)[LAYER]["kernel"]).ravel()

snap_at = set(np.linspace(0, ADMM_STEPS, SNAPSHOTS).astype(int).tolist())
log, snaps = [], {}
t = time.time()
for i in range(ADMM_STEPS + 1):
    if i in snap_at:
        tel = {k: float(v) for k, v in telemetry(state.params, state.opt_state).items()}
        snaps[i] = (layer_levels(state.params, state.opt_state), tel)
    if i == ADMM_STEPS:
        break
    state, m = admm_step(state, next(train_iter))
    log.append({k: float(v) for k, v in m.items()})
print(f"{ADMM_STEPS} ADMM steps in {time.time() - t:.1f} s; last train loss {log[-1]['loss']:.3f}")
for i, (_, tel) in sorted(snaps.items()):
    print(f"step {i:>5}: near grid {100 * tel['pattern/near_grid']:5.1f}%  "
          f"nearest level = Z's {100 * tel['pattern/z_agreement']:5.1f}%  "
          f"relative projection error {tel['pattern/rel_error']:.3f}")

# %% [markdown]
# Watching the weights evolve: `fc1`'s weights divided by their per-channel scale, so every
# grid level is an integer (grey lines: the 6b(L3) levels). At the start the weights are
# spread continuously; as ρ grows they pile up on the levels, and the gaps of the pattern
# (9, 11, 13, 15, 17–19, ...) empty out.

# %%
steps = sorted(snaps)
fig, axes = plt.subplots(len(steps), 1, figsize=(10, 1.6 * len(steps)), sharex=True)
edges = np.arange(-PATTERN.max_level - 1.5, PATTERN.max_level + 1.5, 0.05)
for ax, i in zip(np.atleast_1d(axes), steps):
    levels, tel = snaps[i]
    for lv in PATTERN.levels:
        ax.axvline(lv, color="0.85", lw=0.6, zorder=0)
    ax.hist(levels, bins=edges, color="C0")
    ax.set_yscale("log")
    ax.set_ylabel(f"step {i}", fontsize=8)
    ax.text(0.01, 0.8, f"near grid {100 * tel['pattern/near_grid']:.0f}%",
            transform=ax.transAxes, fontsize=8)
np.atleast_1d(axes)[-1].set_xlabel(f"{LAYER} weight / scale")
fig.suptitle(f"{LAYER} weights evolving onto {PATTERN} during ADMM", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# The residuals tell when ADMM has converged: the primal residual `||W − Z||` (how far the
# weights are from their projection) falls as they settle on the grid, and the projection's
# movement from one Z-step to the next (`||Z − Z_prev||`) drops, then levels off. The dual
# residual is that movement times ρ, so with a growing ρ it rises; Boyd's residual balancing
# (`admm.residual_balancing_rho`) adapts ρ to keep the two residuals comparable instead.

# %%
z_steps = [j for j in range(1, len(log)) if log[j]["admm/num_z_steps"] != log[j - 1]["admm/num_z_steps"]]
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.4))
ax0.plot(z_steps, [log[j]["admm/primal_residual"] for j in z_steps], "o-", label="primal ||W − Z||")
# The dual residual uses rho before its update at that Z-step, i.e. rho of the step before.
ax0.plot(z_steps, [log[j]["admm/dual_residual"] / log[j - 1]["admm/rho"] for j in z_steps], "s-",
         label="||Z − Z_prev||")
ax0.plot(z_steps, [log[j]["admm/dual_residual"] for j in z_steps], "^:", label="dual ρ||Z − Z_prev||")
ax0.plot(range(len(log)), [r["admm/primal_residual_now"] for r in log], lw=0.6, color="0.5",
         label="||W − Z|| every step")
ax0.set_yscale("log")
ax0.set_xlabel("ADMM step")
ax0.legend(fontsize=7)
ax0b = ax0.twinx()
ax0b.plot(range(len(log)), [r["admm/rho"] for r in log], color="C3", lw=1)
ax0b.set_ylabel("ρ", color="C3")
ax0b.set_yscale("log")
smooth = lambda v: np.convolve(v, np.ones(10) / 10, mode="valid")   # 10-step running mean
ax1.plot(smooth([r["loss"] for r in log]), label="train loss")
ax1.plot(smooth([1 - r["accuracy"] for r in log]), label="train error")
ax1.set_xlabel("ADMM step")
ax1.legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Hard projection: the final weights
#
# `admm.finalize` projects every quantized kernel onto its grid with the scales of the last
# Z-step (exactly what the straight-through forward pass computed with); `admm.tree_scales`
# exports those scales. We check that every kernel is now exactly `scale × level` with
# levels of the pattern, and count zeros and shifts per layer (the trainer's
# `evaluation.layer_stats` computes the same for `results.json`).

# %%
final = admm.finalize(state.params, state.opt_state)
scales = admm.tree_scales(state.params, state.opt_state)
admm_acc = accuracy(final, state.model_state)
print(f"test accuracy (8-bit activations, {EVAL_EXAMPLES} images):")
print(f"  float weights                      {100 * float_acc:6.2f}%")
print(f"  {PATTERN}, projected after training  {100 * ptq_acc:6.2f}%")
print(f"  {PATTERN}, ADMM then projected       {100 * admm_acc:6.2f}%\n")
for name in final:
    w = np.asarray(final[name]["kernel"])
    s = np.asarray(scales[name]["kernel"])
    q = np.rint(w / s)
    exact = bool(np.all(q * s == w) and np.all(np.isin(q, PATTERN.levels)))
    mag = np.abs(q).astype(np.int64)
    shift = np.maximum(np.floor(np.log2(np.maximum(mag, 1))).astype(int) - PATTERN.length + 1, 0)
    hist = np.bincount(shift[mag > 0], minlength=PATTERN.max_shift + 1)
    print(f"{name:<10} {w.size:>6} weights  exactly on grid: {exact}  zeros "
          f"{100 * np.mean(mag == 0):4.1f}%  non-zeros by shift {hist.tolist()}")

# %% [markdown]
# ## 5. Fake-quant vs integer mode
#
# `quant.to_integer` lowers the same model to integer-only inference: integer activations
# (the calibrated 8-bit formats), integer weight levels through the emulated EBSP datapath
# (`ebsp_jax.arith`: LOD, LUT, shifter, accumulator, bit-exact), and requantization between
# layers with an integer multiplier and shift (gemmlowp/TFLite style). The fake-quant model
# computes the same thing in float; they should agree up to the requantization rounding.

# %%
from ebsp_jax.quant import datapath
int_vars = {"params": final, **state.model_state}
imodel = quant.to_integer("lenet5", int_vars, weight_rule=rule, weight_scales=scales,
                          activation_bits=ACT_BITS)
print("integer backend:", datapath.backend())
t = time.time()
agree = n = n_int = n_fq = 0
max_diff = 0.0
for x, y in test_batches[:INT_EVAL_BATCHES]:
    lf = model.apply({"params": final, **state.model_state}, x, train=False)
    li = imodel.apply(x)
    agree += int(jnp.sum(lf.argmax(-1) == li.argmax(-1)))
    n_fq += int(jnp.sum(lf.argmax(-1) == y))
    n_int += int(jnp.sum(li.argmax(-1) == y))
    n += len(y)
    max_diff = max(max_diff, float(jnp.max(jnp.abs(lf - li))))
print(f"integer mode on {n} images in {time.time() - t:.1f} s")
print(f"accuracy: fake-quant {100 * n_fq / n:.2f}%, integer {100 * n_int / n:.2f}%; "
      f"same prediction on {100 * agree / n:.2f}%; max |logit difference| {max_diff:.4f}")
print("ops evaluated in float in the integer network:", imodel.float_ops or "none")

# %% [markdown]
# ## 6. Golden vectors for one layer
#
# To verify an RTL implementation of the datapath one needs, for a layer, the integer input
# activations, the weight codes the hardware stores (`sign`, `shift`, `mantissa`, packed), a
# few filled LUTs and the exact int32 accumulators, plus the requantization constants that
# produced the input. `ebsp_jax.golden.export(imodel, x, out_dir, layers=...)` runs the
# integer model with `capture=True` and writes all of them per layer as `$readmemh` hex files
# and a `golden.npz`, with a `manifest.json` giving every width, shape and layout.

# %%
from ebsp_jax import golden

GOLDEN_LAYER = "conv1"
out_dir = tempfile.mkdtemp(prefix="ebsp_golden_")
manifest = golden.export(imodel, test_batches[0][0][:2], out_dir, layers=[GOLDEN_LAYER])
entry = manifest["layers"][GOLDEN_LAYER]
print(f"{GOLDEN_LAYER}: {entry['op']}, weights {entry['weight_pattern']['str']}, "
      f"code layout '{entry['weight_code']['layout']}', accumulator bound "
      f"{entry['acc_bound_bits']} of {entry['acc_bits']} bits, input from {entry['input_kind']}")
for name, f in entry["files"].items():
    with open(os.path.join(out_dir, entry["dir"], f["file"])) as fh:
        words = [ln.strip() for ln in fh if ln.strip() and not ln.startswith("//")]
    print(f"  {f['file']:<18} {str(f['shape']):<16} {f['width']:>2} bits  first words: "
          f"{' '.join(words[:4])}")
if "requant" in entry:
    print("requantization:", entry["requant"]["formula"])

# The golden accumulators are exactly the integer convolution of the golden input and
# weight levels (what an RTL testbench checks, here with plain lax in int32):
g = golden.load(out_dir, GOLDEN_LAYER)
acc = jax.lax.conv_general_dilated(jnp.asarray(g["input"], jnp.int32),
                                   jnp.asarray(g["w_level"], jnp.int32),
                                   **dict(imodel.records[GOLDEN_LAYER].kwargs),
                                   preferred_element_type=jnp.int32)
assert np.array_equal(np.asarray(acc), g["acc"])
print(f"\nacc re-computed from the golden input and weight levels: bit-exact ({g['acc'].size} values)")
print(f"notebook ran in {time.time() - T0:.1f} s")

# %% [markdown]
# ## Takeaway
#
# * ADMM is a drop-in `optax` transformation: `optax.chain(admm.admm(rule, rho, k), adam)`,
#   plus the straight-through forward pass; `finalize` and `tree_scales` hand the result to
#   integer inference.
# * During training the weights visibly migrate onto the pattern's levels: the share near a
#   level rises, the primal residual and the projection error fall as ρ grows. After the hard
#   projection every kernel is exactly on the 6b(L3) grid and the network keeps its accuracy.
#   In the fast run the float model is under-trained, so ADMM's extra steps also improve it;
#   compare ADMM against post-training projection at full budgets (`FAST = False`) and with
#   shorter patterns (`PATTERN_LENGTH = 2`), where projection alone hurts more.
# * The integer mode, through the bit-exact LUT-plus-shift datapath, reproduces the fake-quant
#   model's predictions; `golden.export` turns its per-layer integer tensors into golden
#   vectors for hardware verification. Costs of this datapath: `03_hardware.ipynb`.
