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
# # 01 · Bit sparsity patterns
#
# EBSP (*Evolving Bit Sparsity Patterns*, Liu et al., DAC 2022) restricts every quantized weight
# to a **bit sparsity pattern**: all set bits of its magnitude lie in a window of `L`
# consecutive bit positions that starts at its leading one. A weight is then
# `q = ± m · 2^s` with an `L`-bit mantissa `m` and a shift `s`, and a product `q · a` needs
# only a leading-one detector, a `2^L`-entry look-up table, a barrel shifter and an adder.
#
# This notebook looks at the number format alone (`ebsp_jax.numerics`), no training tricks:
#
# 1. the format `BitPattern(bits, length)` and its hardware code;
# 2. the grids for several `(bits, L)` on a number line;
# 3. projection error against the number of levels: uniform vs EBSP vs power-of-two;
# 4. the weights of a real (briefly trained) LeNet-5 projected onto the grids;
# 5. how the weights populate the pattern: leading-one positions, shifts and mantissas.

# %% tags=["parameters"]
# Budgets. `EBSP_NOTEBOOK_FAST=1` (set by `tests/notebooks_test.py`) selects the small ones;
# the defaults are the full tutorial.
import os

FAST = os.environ.get("EBSP_NOTEBOOK_FAST", "0") == "1"
NUM_SAMPLES = 2**14 if FAST else 2**18    # synthetic weights per distribution (section 3)
MAX_BITS = 5 if FAST else 9               # widest uniform format of the error sweep
TRAIN_STEPS = 120 if FAST else 2000       # LeNet-5 Adam steps on Fashion-MNIST (section 4)
BATCH_SIZE = 64 if FAST else 128
TRAIN_EXAMPLES = 8192 if FAST else 60000  # training images used
EVAL_EXAMPLES = 2000 if FAST else 10000   # test images used

# %%
# %matplotlib inline
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from ebsp_jax import (BitPattern, decode, encode, fit_scale, make_rule, pattern_stats,
                      power_of_two, project, tree_fit_scale, tree_quantize, uniform)
from ebsp_jax import data, models

T0 = time.time()
print("jax", jax.__version__, "on", jax.devices())

# %% [markdown]
# ## 1. The format
#
# `BitPattern(bits=b, length=L)` is a sign-magnitude integer format with `n = b - 1`
# magnitude bits whose set bits fit a window of `L` bits. The allowed magnitudes are `0` and
# `m · 2^s` with `1 <= m < 2^L`; there are `2^L + (n - L) · 2^(L-1)` of them. `L = n` is plain
# uniform quantization and `L = 1` is power-of-two quantization: one knob spans the range.
# The paper's "6-bit (3)" format is `BitPattern(6, 3)`:

# %%
p = BitPattern(6, 3)
print(f"{p}: magnitudes {p.magnitudes.tolist()}")
print(f"{p.num_levels} levels (with signs), max level {p.max_level}, "
      f"stored in {p.code_bits} bits, LUT of {2**p.length} entries\n")

print(f"{'format':>8} {'levels':>7} {'max':>5} {'code bits':>10} {'max shift':>10} {'LUT':>5}")
for L in range(1, 6):
    f = BitPattern(6, L)
    n = f.magnitude_bits
    assert f.num_magnitudes == 2**L + (n - L) * 2**(L - 1)   # docs/method.md, section 2
    kind = " (power of two)" if f.is_power_of_two else " (uniform INT6)" if f.is_uniform else ""
    print(f"{str(f):>8} {f.num_levels:>7} {f.max_level:>5} {f.code_bits:>10} "
          f"{f.max_shift:>10} {2**L:>5}{kind}")

# %% [markdown]
# What the hardware stores is the code `(sign, shift, mantissa)`: a leading-one detector gives
# the shift, a multiplexer the mantissa. `encode` computes it and `decode` inverts it:

# %%
q = jnp.array([0, 5, 7, 12, -20, 28, -3])
sign, shift, mant = encode(q, p)
for v, sg, sh, m in zip(q.tolist(), sign.tolist(), shift.tolist(), mant.tolist()):
    print(f"{v:>4} = {'-' if sg else '+'}{m} << {sh}    |q| = {abs(v):05b}b")
assert (decode(sign, shift, mant, p) == q).all()

# %% [markdown]
# ## 2. The grids on a number line
#
# Top: the 6-bit family on the integer axis, from uniform INT6 (`L = 5`, every integer up to
# 31) down to power-of-two (`L = 1`). Shortening the window removes levels where the magnitude
# is large and keeps all small ones: the grid is dense near zero and sparse in the tails, like a
# floating-point format with an `L`-bit mantissa. Bottom: `L = 3` at several widths, scaled to
# a common range; adding bits adds binades near zero, not resolution at the top.

# %%
fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(10, 6.5))
family = [BitPattern(6, L) for L in range(5, 0, -1)]
for row, f in enumerate(family):
    m = f.magnitudes
    ax0.scatter(m, np.full(m.shape, row), marker="|", s=250, lw=1.5)
ax0.set_yticks(range(len(family)), [f"{f} · {f.num_magnitudes} mags" for f in family])
ax0.set_xticks(range(0, 32, 2))
ax0.set_xlabel("magnitude (integer)")
ax0.set_title("6-bit formats: the window length L thins out large magnitudes")
ax0.invert_yaxis()

widths = [uniform(4), BitPattern(5, 3), BitPattern(6, 3), BitPattern(7, 3), BitPattern(8, 3)]
for row, f in enumerate(widths):
    m = f.magnitudes / f.max_level
    ax1.scatter(m, np.full(m.shape, row), marker="|", s=250, lw=1.0)
ax1.set_yticks(range(len(widths)), [f"{f} · {f.num_magnitudes} mags" for f in widths])
ax1.set_xlabel("magnitude / max level")
ax1.set_title("L = 3 at 4..8 bits: more bits = more binades near zero")
ax1.invert_yaxis()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Projection error against the number of levels
#
# A real tensor is approximated by `α · q`. `fit_scale` finds the scale `α` that minimises
# `||w - α q||²` (coarse search, then alternating projection and least squares), `project`
# returns `α · q`. We measure the signal-to-quantization-noise ratio
# `SQNR = 10 log10(E[w²] / E[(w - α q)²])` on Gaussian and Laplace samples (trained weights sit
# between the two) for uniform (`L = n`), EBSP `L = 3` (and `L = 2` with full budgets) and
# power-of-two (`L = 1`) at several widths. The x axis is the number of levels, i.e. what
# storage costs (`log2` of it is the code width). Both distributions go through one
# `fit_scale` call as two rows with `axis=1` (one scale per row): each format compiles once.

# %%
rng = np.random.default_rng(0)
w = jnp.asarray(np.stack([rng.standard_normal(NUM_SAMPLES),   # row 0: Gaussian
                          rng.laplace(size=NUM_SAMPLES)]),    # row 1: Laplace
                jnp.float32)

def sqnr_db(w, fmt):
    scale = fit_scale(w, fmt, axis=1)    # shape (2, 1): one scale per row
    err = jnp.mean(jnp.square(w - project(w, fmt, scale)), axis=1)
    return (10 * jnp.log10(jnp.mean(jnp.square(w), axis=1) / err)).tolist()

families = {
    "uniform (L = n)": [uniform(b) for b in range(3, MAX_BITS + 1)],
    "EBSP L = 3": [BitPattern(b, 3) for b in range(4, MAX_BITS + 2)],
    "power of two (L = 1)": [power_of_two(b) for b in range(3, MAX_BITS)],
}
if not FAST:
    families["EBSP L = 2"] = [BitPattern(b, 2) for b in range(3, MAX_BITS + 2)]
results = {name: [(f, f.num_levels, *sqnr_db(w, f)) for f in fmts]
           for name, fmts in families.items()}

fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
for name, rows in results.items():
    levels = [r[1] for r in rows]
    for ax, col in zip(axes, (2, 3)):
        ax.plot(levels, [r[col] for r in rows], "o-", label=name)
for ax, title in zip(axes, ("Gaussian weights", "Laplace weights")):
    ax.set_xscale("log", base=2)
    ax.set_xlabel("number of levels")
    ax.set_title(title)
    ax.grid(alpha=0.3)
axes[0].set_ylabel("SQNR (dB)")
axes[1].legend()
fig.tight_layout()
plt.show()

print(f"{'family':>20} {'format':>7} {'levels':>7} {'SQNR gauss':>11} {'SQNR laplace':>13}")
for name, rows in results.items():
    for f, lv, g, l in rows:
        print(f"{name:>20} {str(f):>7} {lv:>7} {g:>10.1f}  {l:>12.1f}")

# %% [markdown]
# Reading the plot:
#
# * Up to the sweet spot below (`n ≈ L + 3` magnitude bits), EBSP is about as accurate as
#   uniform at an equal number of levels on Gaussian weights and better on heavy-tailed
#   Laplace weights, where range matters more than fine steps at the top (e.g. 31 levels:
#   6b(L3) vs uniform 5-bit). Beyond it uniform wins: EBSP's SQNR stops at the ceiling of
#   the next point while uniform gains about 6 dB per extra bit.
# * Each pattern length has a ceiling: the relative step inside a binade is `2^-(L-1)`, so
#   SQNR stops near `6·L + 7` dB (about 26 dB for `L = 3`, 14 dB for power-of-two) however
#   many bits are added. Past `n ≈ L + 3` magnitude bits extra width only adds tiny levels.
# * So the sweet spot is a few bits above `L`, like the paper's 6b(L3): close to uniform
#   accuracy, and the product needs an 8-entry LUT instead of a multiplier.
#
# ## 4. Real trained weights
#
# Synthetic distributions only go so far. We train LeNet-5 (`ebsp_jax.models`) on Fashion-MNIST
# (`ebsp_jax.data`, the real idx files) briefly with Adam in plain float (`TRAIN_STEPS`), then
# project its kernels onto several grids **without any retraining** (per-output-channel scales
# fitted by `tree_fit_scale`; biases stay float) and measure test accuracy. Notebook 02 shows
# how ADMM training closes the remaining gap.

# %%
train_ds = data.get_dataset("fashion_mnist", "train", batch_size=BATCH_SIZE, seed=0, augment=False,
                            num_examples=TRAIN_EXAMPLES, num_epochs=None, num_threads=0)
test_ds = data.get_dataset("fashion_mnist", "test", batch_size=1000,
                           num_examples=EVAL_EXAMPLES, num_threads=0)
test_batches = [(jnp.asarray(b["image"]), jnp.asarray(b["label"])) for b in test_ds]

model = models.get_model("lenet5", num_classes=10)
# One jitted init (one compile, not one per op); the "rbg" key (XLA's RngBitGenerator)
# compiles several times faster than the default threefry on CPU.
init = jax.jit(lambda key, x: model.init(key, x, train=False))
params = init(jax.random.key(0, impl="rbg"), test_batches[0][0][:1])["params"]
tx = optax.adam(1e-3)
opt_state = tx.init(params)

@jax.jit
def train_step(params, opt_state, image, label):
    def loss_fn(p):
        logits = model.apply({"params": p}, image, train=False)
        return optax.softmax_cross_entropy_with_integer_labels(logits, label).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

@jax.jit
def correct(params, image, label):
    return jnp.sum(model.apply({"params": params}, image, train=False).argmax(-1) == label)

def accuracy(params):
    n = sum(int(correct(params, x, y)) for x, y in test_batches)
    return n / sum(len(y) for _, y in test_batches)

t = time.time()
for step, batch in zip(range(TRAIN_STEPS), train_ds):
    params, opt_state, loss = train_step(params, opt_state, batch["image"], batch["label"])
    if step % max(1, TRAIN_STEPS // 5) == 0 or step == TRAIN_STEPS - 1:
        print(f"step {step:>5}  loss {float(loss):.3f}")
float_acc = accuracy(params)
print(f"{TRAIN_STEPS} steps in {time.time() - t:.1f} s; float test accuracy "
      f"{100 * float_acc:.2f}% on {sum(len(y) for _, y in test_batches)} images")

# %% [markdown]
# Project every kernel onto each grid (per output channel) and evaluate. `make_rule(fmt)`
# quantizes every `kernel` leaf with `fmt` and keeps biases in float.

# %%
formats = [uniform(8), uniform(6), BitPattern(6, 3), BitPattern(6, 2), power_of_two(6),
           BitPattern(5, 3), uniform(4)]
if FAST:
    formats = [uniform(6), BitPattern(6, 3)]   # section 5 needs these two

def kernels(tree):
    # The quantized leaves (Dense/Conv kernels) of a params-shaped tree, flattened.
    return jnp.concatenate([x.reshape(-1) for x in jax.tree.leaves(tree) if x.ndim >= 2])

print(f"float: {100 * float_acc:.2f}%")
print(f"{'format':>8} {'levels':>7} {'test acc':>9} {'drop':>7} {'weight SQNR':>12}")
levels = {}   # str(fmt) -> int32 levels of every kernel, reused in section 5
for fmt in formats:
    rule = make_rule(fmt)
    scales = tree_fit_scale(params, rule)        # per output channel; None for biases
    q = tree_quantize(params, rule, scales)      # int32 levels; None for biases
    # alpha * q (what tree_project(params, rule, scales) computes); biases pass through.
    projected = jax.tree.map(lambda w, q, s: w if q is None else q * s, params, q, scales)
    levels[str(fmt)] = kernels(q)
    acc = accuracy(projected)
    w_all, p_all = kernels(params), kernels(projected)
    sqnr = 10 * jnp.log10(jnp.sum(w_all**2) / jnp.sum((w_all - p_all) ** 2))
    print(f"{str(fmt):>8} {fmt.num_levels:>7} {100 * acc:>8.2f}% {100 * (float_acc - acc):>6.2f}"
          f" {float(sqnr):>10.1f} dB")

# %% [markdown]
# One layer up close: the `fc1` kernel (400 × 120) divided by a single fitted scale, against the
# 6b(L3) levels (grey lines). The levels crowd the bulk of the distribution near zero and thin
# out in the tails.

# %%
fmt = BitPattern(6, 3)
w = params["fc1"]["kernel"]
scale = fit_scale(w, fmt)
fig, ax = plt.subplots(figsize=(10, 3.5))
ax.hist(np.asarray(w / scale).ravel(), bins=240, color="C0", alpha=0.8)
for lv in fmt.levels:
    ax.axvline(lv, color="0.5", lw=0.6, zorder=0)
ax.set_xlabel(f"w / α   (α = {float(scale):.4f})")
ax.set_ylabel("count")
ax.set_title(f"fc1 weights and the {fmt} grid")
ax.set_xlim(-fmt.max_level - 2, fmt.max_level + 2)
plt.show()

# %% [markdown]
# ## 5. How the weights populate the pattern
#
# `pattern_stats(q, fmt)` returns histograms of the leading-one position, the canonical shift
# and the mantissa of integer weights (jit-able, so the trainer can log it every step). Below:
# every LeNet-5 kernel quantized to 6b(L3), and, for comparison, the same weights quantized to
# plain uniform INT6 and then *read* against the 6b(L3) pattern. `on_grid_fraction` of the
# uniform weights is the share of INT6 weights that already fit a 3-bit window (about two
# thirds here): small weights fit any window. That is the bit sparsity EBSP exploits; ADMM
# moves the rest.

# %%
fmt = BitPattern(6, 3)
stats_ebsp = pattern_stats(levels["6b(L3)"], fmt)   # 6b(L3) levels read as 6b(L3)
stats_int6 = pattern_stats(levels["6b(L5)"], fmt)   # uniform INT6 levels read as 6b(L3)

fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
for ax, key, xlabel in zip(axes, ("leading_one", "shift", "mantissa"),
                           ("leading-one position", "shift s", "mantissa m")):
    for off, (name, st) in zip((-0.2, 0.2), (("6b(L3)", stats_ebsp), ("INT6 read as 6b(L3)", stats_int6))):
        counts = np.asarray(st[key])
        ax.bar(np.arange(len(counts)) + off, counts / counts.sum(), width=0.4, label=name)
    ax.set_xlabel(xlabel)
axes[0].set_ylabel("fraction")
axes[1].set_xticks(range(fmt.max_shift + 2), [str(s) for s in range(fmt.max_shift + 1)] + ["> max"])
axes[0].legend(fontsize=8)
fig.suptitle(f"{int(stats_ebsp['count'])} LeNet-5 kernel weights")
fig.tight_layout()
plt.show()

for name, st in (("6b(L3)", stats_ebsp), ("INT6 read as 6b(L3)", stats_int6)):
    print(f"{name:>20}: zero {100 * float(st['zero_fraction']):5.1f}%  "
          f"on grid {100 * float(st['on_grid_fraction']):5.1f}%  "
          f"shift histogram {np.asarray(st['shift']).tolist()}")
print(f"\nnotebook ran in {time.time() - T0:.1f} s")

# %% [markdown]
# ## Takeaway
#
# * `BitPattern(bits, L)` is one knob from uniform (`L = n`) to power-of-two (`L = 1`); the
#   grid keeps every small magnitude and thins out large ones, so it spends its levels where
#   weights are.
# * At an equal number of levels, EBSP `L = 3` matches uniform on bell-shaped weights and beats
#   it on heavy tails, up to a ceiling set by `L`; power-of-two levels off early.
# * Trained weights projected onto 6b(L3) with no retraining already stay close to float
#   accuracy, while the product needs only an 8-entry LUT, a shifter and an adder.
# * Most plain INT6 weights already fit a 3-bit window (`on_grid_fraction` above); the rest is
#   what ADMM training evolves onto the grid: see `02_admm_training.ipynb`.
#   The hardware payoff is in `03_hardware.ipynb`.
