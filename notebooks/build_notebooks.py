"""Writes the tutorial notebooks of ``notebooks/`` (outputs stripped) from the cell lists below.

The ``.ipynb`` files are generated: edit this script, then run

    .venv/bin/python notebooks/build_notebooks.py          # rewrite every notebook
    .venv/bin/python notebooks/build_notebooks.py --check  # exit 1 if a notebook is stale

Every notebook reads the budgets from its first code cell: ``EBSP_NOTEBOOK_FAST=1`` in the
environment selects small budgets (what ``tests/notebooks_test.py`` runs, seconds per notebook);
without it the notebook runs its full budgets (minutes on a laptop CPU).
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap

import nbformat
from nbformat import v4

HERE = os.path.dirname(os.path.abspath(__file__))

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def md(text: str):
  return v4.new_markdown_cell(textwrap.dedent(text).strip("\n"))


def code(text: str, tags=()):
  cell = v4.new_code_cell(textwrap.dedent(text).strip("\n"))
  if tags:
    cell.metadata["tags"] = list(tags)
  return cell


PARAMS_NOTE = ("Budgets. `EBSP_NOTEBOOK_FAST=1` (set by `tests/notebooks_test.py`) selects the "
               "small ones; the defaults are the full tutorial.")

# ---------------------------------------------------------------------------------------------
# 01: bit sparsity patterns.
NB01 = [
    md("""
    # 01 · Bit sparsity patterns

    EBSP (*Evolving Bit Sparsity Patterns*, Liu et al., DAC 2022) restricts every quantized weight
    to a **bit sparsity pattern**: all set bits of its magnitude lie in a window of `L`
    consecutive bit positions that starts at its leading one. A weight is then
    `q = ± m · 2^s` with an `L`-bit mantissa `m` and a shift `s`, and a product `q · a` needs
    only a leading-one detector, a `2^L`-entry look-up table, a barrel shifter and an adder.

    This notebook looks at the number format alone (`ebsp_jax.numerics`), no training tricks:

    1. the format `BitPattern(bits, length)` and its hardware code;
    2. the grids for several `(bits, L)` on a number line;
    3. projection error against the number of levels: uniform vs EBSP vs power-of-two;
    4. the weights of a real (briefly trained) LeNet-5 projected onto the grids;
    5. how the weights populate the pattern: leading-one positions, shifts and mantissas.
    """),
    code(f"""
    # {PARAMS_NOTE}
    import os

    FAST = os.environ.get("EBSP_NOTEBOOK_FAST", "0") == "1"
    NUM_SAMPLES = 2**14 if FAST else 2**18    # synthetic weights per distribution (section 3)
    MAX_BITS = 5 if FAST else 9               # widest uniform format of the error sweep
    TRAIN_STEPS = 120 if FAST else 2000       # LeNet-5 Adam steps on Fashion-MNIST (section 4)
    BATCH_SIZE = 64 if FAST else 128
    TRAIN_EXAMPLES = 8192 if FAST else 60000  # training images used
    EVAL_EXAMPLES = 2000 if FAST else 10000   # test images used
    """, tags=["parameters"]),
    code("""
    %matplotlib inline
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
    """),
    md("""
    ## 1. The format

    `BitPattern(bits=b, length=L)` is a sign-magnitude integer format with `n = b - 1`
    magnitude bits whose set bits fit a window of `L` bits. The allowed magnitudes are `0` and
    `m · 2^s` with `1 <= m < 2^L`; there are `2^L + (n - L) · 2^(L-1)` of them. `L = n` is plain
    uniform quantization and `L = 1` is power-of-two quantization: one knob spans the range.
    The paper's "6-bit (3)" format is `BitPattern(6, 3)`:
    """),
    code("""
    p = BitPattern(6, 3)
    print(f"{p}: magnitudes {p.magnitudes.tolist()}")
    print(f"{p.num_levels} levels (with signs), max level {p.max_level}, "
          f"stored in {p.code_bits} bits, LUT of {2**p.length} entries\\n")

    print(f"{'format':>8} {'levels':>7} {'max':>5} {'code bits':>10} {'max shift':>10} {'LUT':>5}")
    for L in range(1, 6):
        f = BitPattern(6, L)
        n = f.magnitude_bits
        assert f.num_magnitudes == 2**L + (n - L) * 2**(L - 1)   # EBSP_SPEC.md section 2
        kind = " (power of two)" if f.is_power_of_two else " (uniform INT6)" if f.is_uniform else ""
        print(f"{str(f):>8} {f.num_levels:>7} {f.max_level:>5} {f.code_bits:>10} "
              f"{f.max_shift:>10} {2**L:>5}{kind}")
    """),
    md("""
    What the hardware stores is the code `(sign, shift, mantissa)`: a leading-one detector gives
    the shift, a multiplexer the mantissa. `encode` computes it and `decode` inverts it:
    """),
    code("""
    q = jnp.array([0, 5, 7, 12, -20, 28, -3])
    sign, shift, mant = encode(q, p)
    for v, sg, sh, m in zip(q.tolist(), sign.tolist(), shift.tolist(), mant.tolist()):
        print(f"{v:>4} = {'-' if sg else '+'}{m} << {sh}    |q| = {abs(v):05b}b")
    assert (decode(sign, shift, mant, p) == q).all()
    """),
    md("""
    ## 2. The grids on a number line

    Top: the 6-bit family on the integer axis, from uniform INT6 (`L = 5`, every integer up to
    31) down to power-of-two (`L = 1`). Shortening the window removes levels where the magnitude
    is large and keeps all small ones: the grid is dense near zero and sparse in the tails, like a
    floating-point format with an `L`-bit mantissa. Bottom: `L = 3` at several widths, scaled to
    a common range; adding bits adds binades near zero, not resolution at the top.
    """),
    code("""
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
    """),
    md("""
    ## 3. Projection error against the number of levels

    A real tensor is approximated by `α · q`. `fit_scale` finds the scale `α` that minimises
    `||w - α q||²` (coarse search, then alternating projection and least squares), `project`
    returns `α · q`. We measure the signal-to-quantization-noise ratio
    `SQNR = 10 log10(E[w²] / E[(w - α q)²])` on Gaussian and Laplace samples (trained weights sit
    between the two) for uniform (`L = n`), EBSP `L = 3` (and `L = 2` with full budgets) and
    power-of-two (`L = 1`) at several widths. The x axis is the number of levels, i.e. what
    storage costs (`log2` of it is the code width). Both distributions go through one
    `fit_scale` call as two rows with `axis=1` (one scale per row): each format compiles once.
    """),
    code("""
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
    """),
    md("""
    Reading the plot:

    * Up to the sweet spot below (`n ≈ L + 3` magnitude bits), EBSP is about as accurate as
      uniform at an equal number of levels on Gaussian weights and better on heavy-tailed
      Laplace weights, where range matters more than fine steps at the top (e.g. 31 levels:
      6b(L3) vs uniform 5-bit). Beyond it uniform wins: EBSP's SQNR stops at the ceiling of
      the next point while uniform gains about 6 dB per extra bit.
    * Each pattern length has a ceiling: the relative step inside a binade is `2^-(L-1)`, so
      SQNR stops near `6·L + 7` dB (about 26 dB for `L = 3`, 14 dB for power-of-two) however
      many bits are added. Past `n ≈ L + 3` magnitude bits extra width only adds tiny levels.
    * So the sweet spot is a few bits above `L`, like the paper's 6b(L3): close to uniform
      accuracy, and the product needs an 8-entry LUT instead of a multiplier.

    ## 4. Real trained weights

    Synthetic distributions only go so far. We train LeNet-5 (`ebsp_jax.models`) on Fashion-MNIST
    (`ebsp_jax.data`, the real idx files) briefly with Adam in plain float (`TRAIN_STEPS`), then
    project its kernels onto several grids **without any retraining** (per-output-channel scales
    fitted by `tree_fit_scale`; biases stay float) and measure test accuracy. Notebook 02 shows
    how ADMM training closes the remaining gap.
    """),
    code("""
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
    """),
    md("""
    Project every kernel onto each grid (per output channel) and evaluate. `make_rule(fmt)`
    quantizes every `kernel` leaf with `fmt` and keeps biases in float.
    """),
    code("""
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
    """),
    md("""
    One layer up close: the `fc1` kernel (400 × 120) divided by a single fitted scale, against the
    6b(L3) levels (grey lines). The levels crowd the bulk of the distribution near zero and thin
    out in the tails.
    """),
    code("""
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
    """),
    md("""
    ## 5. How the weights populate the pattern

    `pattern_stats(q, fmt)` returns histograms of the leading-one position, the canonical shift
    and the mantissa of integer weights (jit-able, so the trainer can log it every step). Below:
    every LeNet-5 kernel quantized to 6b(L3), and, for comparison, the same weights quantized to
    plain uniform INT6 and then *read* against the 6b(L3) pattern. `on_grid_fraction` of the
    uniform weights is the share of INT6 weights that already fit a 3-bit window (about two
    thirds here): small weights fit any window. That is the bit sparsity EBSP exploits; ADMM
    moves the rest.
    """),
    code("""
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
    print(f"\\nnotebook ran in {time.time() - T0:.1f} s")
    """),
    md("""
    ## Takeaway

    * `BitPattern(bits, L)` is one knob from uniform (`L = n`) to power-of-two (`L = 1`); the
      grid keeps every small magnitude and thins out large ones, so it spends its levels where
      weights are.
    * At an equal number of levels, EBSP `L = 3` matches uniform on bell-shaped weights and beats
      it on heavy tails, up to a ceiling set by `L`; power-of-two levels off early.
    * Trained weights projected onto 6b(L3) with no retraining already stay close to float
      accuracy, while the product needs only an 8-entry LUT, a shifter and an adder.
    * Most plain INT6 weights already fit a 3-bit window (`on_grid_fraction` above); the rest is
      what ADMM training evolves onto the grid: see `02_admm_training.ipynb`.
      The hardware payoff is in `03_hardware.ipynb`.
    """),
]

# ---------------------------------------------------------------------------------------------
# 02: ADMM training.
NB02 = [
    md("""
    # 02 · Evolving the weights onto the pattern: ADMM training

    Projecting a trained network onto a bit sparsity pattern after the fact (notebook 01) costs
    accuracy that grows as the pattern shortens. EBSP *evolves* the weights onto the grid during
    training with ADMM (Leng et al., AAAI 2018): minimise the loss `f(W)` subject to `W ∈ C`,
    the pattern grid with a per-channel scale, by alternating

    * **W-step** (every step): an optimizer step on `f(W) + (ρ/2)||W − Z + U||²`, with the
      forward pass computed with the *projected* weights (straight-through estimator);
    * **Z-step** (every `k` steps): `Z = Proj_C(W + U)` with a refitted scale, then the dual
      update `U ← U + W − Z`; ρ grows so the pull toward the grid strengthens.

    In `ebsp_jax` this is an `optax` transformation, `ebsp_jax.admm.admm(rule, rho,
    update_every)`, chained before the optimizer. This notebook trains LeNet-5 on Fashion-MNIST
    with it and watches the weights evolve; then it runs the result in fake-quant and in integer
    (emulated hardware) mode and dumps one layer's golden vectors for RTL verification.
    `experiments/fashion_mnist.py` runs the same pipeline at full scale with checkpoints.
    """),
    code(f"""
    # {PARAMS_NOTE}
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
    """, tags=["parameters"]),
    code("""
    %matplotlib inline
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
    """),
    md("""
    ## 1. Data and a fake-quant model

    `quant.fake_quant_injection(8)` plugs into Flax's `dot_general_cls` / `conv_general_dilated_cls`
    hooks of every layer: each conv/dense fake-quantizes its input activation to 8 bits with a
    scale calibrated by an EMA of the batch range (kept in the `quant_stats` collection). The
    weights are quantized outside the model, by ADMM. The same model definition later runs in
    integer mode.
    """),
    code("""
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
    """),
    md("""
    ## 2. Float pre-training

    `ebsp_jax.train.train_step` is the trainer's pure step function: it takes a `TrainState`,
    a batch, the model's `apply` and an optax optimizer, updates the mutable collections
    (`quant_stats` here) and returns metrics. We jit it with the optimizer bound.
    """),
    code("""
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
    """),
    md("""
    ## 3. ADMM

    The ADMM transformation goes *before* Adam in the chain, so the penalty gradient
    `ρ (W − Z + U)` is preconditioned like the loss gradient. `straight_through=True` makes the
    step compute the forward pass with `admm.straight_through(params, opt_state)`: the weights
    projected with the scales of the last Z-step. ρ follows `admm.geometric_rho`.

    ρ must grow large enough for the penalty to dominate the loss gradient near the end
    (Adam normalises gradient magnitudes, so what counts is which term wins the sign).
    We log, every step, ρ and the residuals of the last Z-step (primal `||W − Z||`, dual
    `ρ ||Z − Z_prev||`), and at a few snapshots the trainer's `pattern_telemetry`: the share of
    weights within 0.05 (in units of the scale) of a grid level (`near_grid`), the share whose
    nearest level is already Z's (`z_agreement`), and a histogram of one layer's weights.
    """),
    code("""
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
    """),
    md("""
    Watching the weights evolve: `fc1`'s weights divided by their per-channel scale, so every
    grid level is an integer (grey lines: the 6b(L3) levels). At the start the weights are
    spread continuously; as ρ grows they pile up on the levels, and the gaps of the pattern
    (9, 11, 13, 15, 17–19, ...) empty out.
    """),
    code("""
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
    """),
    md("""
    The residuals tell when ADMM has converged: the primal residual `||W − Z||` (how far the
    weights are from their projection) falls as they settle on the grid, and the projection's
    movement from one Z-step to the next (`||Z − Z_prev||`) drops, then levels off. The dual
    residual is that movement times ρ, so with a growing ρ it rises; Boyd's residual balancing
    (`admm.residual_balancing_rho`) adapts ρ to keep the two residuals comparable instead.
    """),
    code("""
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
    """),
    md("""
    ## 4. Hard projection: the final weights

    `admm.finalize` projects every quantized kernel onto its grid with the scales of the last
    Z-step (exactly what the straight-through forward pass computed with); `admm.tree_scales`
    exports those scales. We check that every kernel is now exactly `scale × level` with
    levels of the pattern, and count zeros and shifts per layer (the trainer's
    `evaluation.layer_stats` computes the same for `results.json`).
    """),
    code("""
    final = admm.finalize(state.params, state.opt_state)
    scales = admm.tree_scales(state.params, state.opt_state)
    admm_acc = accuracy(final, state.model_state)
    print(f"test accuracy (8-bit activations, {EVAL_EXAMPLES} images):")
    print(f"  float weights                      {100 * float_acc:6.2f}%")
    print(f"  {PATTERN}, projected after training  {100 * ptq_acc:6.2f}%")
    print(f"  {PATTERN}, ADMM then projected       {100 * admm_acc:6.2f}%\\n")
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
    """),
    md("""
    ## 5. Fake-quant vs integer mode

    `quant.to_integer` lowers the same model to integer-only inference: integer activations
    (the calibrated 8-bit formats), integer weight levels through the emulated EBSP datapath
    (`ebsp_jax.arith`: LOD, LUT, shifter, accumulator, bit-exact), and requantization between
    layers with an integer multiplier and shift (gemmlowp/TFLite style). The fake-quant model
    computes the same thing in float; they should agree up to the requantization rounding.
    """),
    code("""
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
    """),
    md("""
    ## 6. Golden vectors for one layer

    To verify an RTL implementation of the datapath one needs, for a layer, the integer input
    activations, the weight codes the hardware stores (`sign`, `shift`, `mantissa`, packed), a
    few filled LUTs and the exact int32 accumulators, plus the requantization constants that
    produced the input. `ebsp_jax.golden.export(imodel, x, out_dir, layers=...)` runs the
    integer model with `capture=True` and writes all of them per layer as `$readmemh` hex files
    and a `golden.npz`, with a `manifest.json` giving every width, shape and layout.
    """),
    code("""
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
    print(f"\\nacc re-computed from the golden input and weight levels: bit-exact ({g['acc'].size} values)")
    print(f"notebook ran in {time.time() - T0:.1f} s")
    """),
    md("""
    ## Takeaway

    * ADMM is a drop-in `optax` transformation: `optax.chain(admm.admm(rule, rho, k), adam)`,
      plus the straight-through forward pass; `finalize` and `tree_scales` hand the result to
      integer inference.
    * During training the weights visibly migrate onto the pattern's levels: the share near a
      level rises, the primal residual and the projection error fall as ρ grows. After the hard
      projection every kernel is exactly on the 6b(L3) grid and the network keeps its accuracy.
      In the fast run the float model is under-trained, so ADMM's extra steps also improve it;
      compare ADMM against post-training projection at full budgets (`FAST = False`) and with
      shorter patterns (`PATTERN_LENGTH = 2`), where projection alone hurts more.
    * The integer mode, through the bit-exact LUT-plus-shift datapath, reproduces the fake-quant
      model's predictions; `golden.export` turns its per-layer integer tensors into golden
      vectors for hardware verification. Costs of this datapath: `03_hardware.ipynb`.
    """),
]

# ---------------------------------------------------------------------------------------------
# 03: hardware.
NB03 = [
    md("""
    # 03 · Hardware: energy, latency, Pareto, export

    The payoff of a bit sparsity pattern is in the arithmetic: a `6b(L3)` weight times an 8-bit
    activation needs a leading-one detector, an 8-entry LUT of activation multiples, a barrel
    shifter and an adder, no multiplier. `ebsp_jax.hw` turns that into numbers: every design is
    a PE model (components with cited 45 nm energies and areas, `ebsp_jax/hw/tech.py`) plus a
    memory hierarchy, filled to an **equal PE-array area** (0.32 mm², as in the paper), and a
    loop-nest dataflow model maps every layer of a real network onto it.

    1. the five designs at equal area and their PE energy per MAC;
    2. a network's energy and latency on each, with breakdowns and the paper's claims beside;
    3. data-aware EBSP energy from actual weight codes (zero weights gated, shift-0 bypass);
    4. the bit-width × pattern-length Pareto;
    5. export to ZigZag and Timeloop, and a ZigZag cross-check of one layer.

    These are model estimates, not silicon measurements; `experiments/hardware.py` is the
    command-line version of the same computation.
    """),
    code(f"""
    # {PARAMS_NOTE}
    import os

    FAST = os.environ.get("EBSP_NOTEBOOK_FAST", "0") == "1"
    # The paper reports ResNet-50 on ImageNet; LeNet-5 keeps the fast run to seconds.
    MODEL, DATASET = ("lenet5", "fashion_mnist") if FAST else ("resnet50", "imagenet")
    SEARCH = "fast"                          # mapper effort: fast | default | thorough
    SWEEP_BITS = [4, 6] if FAST else [4, 5, 6, 8]
    PARAMS_PATH = None     # a trained checkpoint (orbax dir or .npz) for data-aware EBSP energy
    RESULTS = []           # training results.json files: real accuracies for the Pareto plot
    RUN_ZIGZAG = True      # cross-check one layer with ZigZag when zigzag-dse is installed
    """, tags=["parameters"]),
    code("""
    %matplotlib inline
    import tempfile
    import time

    import jax
    import jax.numpy as jnp
    import matplotlib.pyplot as plt
    import numpy as np

    from ebsp_jax import BitPattern, fit_scale, models, project
    from ebsp_jax import hw
    from ebsp_jax.hw import events as hw_events
    from ebsp_jax.hw import report, timeloop_export, zigzag_export

    T0 = time.time()
    """),
    md("""
    ## 1. Five designs at equal area

    `hw.build_all(...)` builds Eyeriss (16-bit), Bit Fusion (4-bit bricks), WAX (8-bit), OLAccel
    (4-bit with 16-bit outliers) and EBSP (`pattern_bits=6, pattern_length=3`), each with as
    many PEs as fit 0.32 mm² (PE arithmetic + registers + local memory, `area_scope="pe+local"`).
    The PE counts follow from our component areas; the paper's counts are printed beside them
    (the paper does not give its area accounting, so they differ).
    """),
    code("""
    accs = hw.build_all(pattern_bits=6, pattern_length=3)
    print(f"{'design':<10} {'format':<22} {'PEs':>6} {'paper':>6} {'array':>8} "
          f"{'um2/PE':>8} {'pJ/MAC (PE)':>12}")
    for name, a in accs.items():
        print(f"{name:<10} {a.label:<22} {a.pe_count:>6} {hw.PAPER_PE_COUNTS.get(name, 0):>6} "
              f"{a.array[0]:>3}x{a.array[1]:<4} {a.pe_area_um2:>8.0f} "
              f"{a.pe.energy_per_mac_pj() * a.tech.energy_scale:>12.3f}")
    """),
    md("""
    Where a PE spends its energy per MAC (`PEModel.breakdown()`, datapath only; storage is
    costed by the dataflow model). EBSP replaces the multiplier with a LOD, a LUT read, a
    shifter and a conditional negate; Bit Fusion's figure is per 4×4 product (one brick).
    """),
    code("""
    fig, ax = plt.subplots(figsize=(9, 3.2))
    parts = {}
    for name, a in accs.items():
        for row in a.pe.breakdown():
            key = row["part"].split("(")[0].strip()
            parts.setdefault(key, {})[name] = parts.get(key, {}).get(name, 0.0) + row["energy_pj_per_mac"]
    left = np.zeros(len(accs))
    colors = plt.cm.tab20(np.linspace(0, 1, 20))
    for i, (key, by_design) in enumerate(parts.items()):
        vals = np.array([by_design.get(n, 0.0) for n in accs])
        ax.barh(list(accs), vals, left=left, label=key, color=colors[i % 20])
        left += vals
    ax.set_xlabel("PE datapath energy per MAC (pJ, 45 nm)")
    ax.invert_yaxis()
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    plt.show()
    """),
    md("""
    ## 2. A network on every design

    `hw.model_workload(model, dataset)` traces a registered Flax model's jaxpr and lists its
    conv/dense layers as loop nests; `hw.evaluate_network` searches a mapping for every layer on
    every design (objective: energy-delay product) and sums energy by category and latency.
    """),
    code("""
    t = time.time()
    wl = hw.model_workload(MODEL, DATASET)
    result = hw.evaluate_network(wl, accs, dataset=DATASET, search=SEARCH)
    print(f"evaluated in {time.time() - t:.1f} s\\n")
    print(hw.format_table(result))
    """),
    md("""
    The table's last block is EBSP against each baseline: total energy reduction, on-chip only
    (DRAM excluded: DRAM traffic depends mostly on how many bits each stored weight and
    activation takes), and speed-up. For the paper's own setting (ResNet-50 on ImageNet, EBSP
    6b(L3)) its claims are printed beside ours; for any other setting they are left out.
    Breakdown by category (total, then on-chip only), normalised to Eyeriss, and latency:
    """),
    code("""
    names = list(result.results)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, cats, title in ((axes[0], report.CATEGORIES, "energy by category"),
                            (axes[1], [c for c in report.CATEGORIES if c != "dram"],
                             "on-chip energy (DRAM excluded)")):
        ref = sum(result.results["eyeriss"].energy[c] for c in cats)
        bottom = np.zeros(len(names))
        for i, cat in enumerate(report.CATEGORIES):
            vals = np.array([result.results[n].energy[cat] / ref for n in names])
            if cat in cats and vals.any():
                ax.bar(names, vals, bottom=bottom, label=cat, color=f"C{i}")
                bottom += vals
        ax.set_ylabel("energy / Eyeriss")
        ax.set_title(f"{MODEL}: {title}", fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
    axes[0].legend(fontsize=7)
    axes[2].bar(names, [result.results[n].latency_s * 1e6 for n in names], color="C9")
    axes[2].set_ylabel("latency per image (µs)")
    axes[2].set_title("latency at equal area", fontsize=10)
    axes[2].tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    plt.show()

    def less_or_more(reduction_pct):
        # A reduction of +60% is "60% less"; -51% means EBSP uses 51% more.
        return f"{abs(reduction_pct):.1f}% {'less' if reduction_pct >= 0 else 'more'}"

    comp = hw.comparison(result)
    for base, c in comp.items():
        paper = c["paper_energy_reduction_pct"]
        print(f"EBSP vs {base:<9}: {less_or_more(c['energy_reduction_pct'])} energy "
              f"(on-chip: {less_or_more(c['onchip_energy_reduction_pct'])}), "
              f"speed-up {c['speedup']:5.2f}x"
              + (f"   paper: {paper:.1f}% less energy, {c['paper_perf_gain_pct']:.1f}% faster"
                 if paper is not None else ""))
    """),
    md("""
    Per layer on EBSP: where the energy goes and what bounds each layer (`compute`, or the
    memory level whose bandwidth limits it).
    """),
    code("""
    ebsp = result.results["ebsp"]
    rows = sorted(zip(wl.layers, ebsp.layers), key=lambda lc: -lc[1].energy_pj * lc[0].repeat)
    print(f"{'layer':<28} {'MACs':>11} {'energy uJ':>10} {'DRAM %':>7} {'util':>5}  bound")
    for layer, c in rows[:8]:
        e = c.energy_pj * layer.repeat
        print(f"{layer.name[:28]:<28} {layer.total_macs:>11,} {e * 1e-6:>10.3f} "
              f"{100 * c.energy['dram'] / c.energy_pj:>6.1f}% {c.utilization:>5.2f}  {c.bound}")
    """),
    md("""
    ## 3. Data-aware EBSP energy

    Shapes alone assume every product does full work. With real weight codes, a zero weight
    gates the whole datapath (operand isolation) and a weight with shift 0 bypasses the
    shifter. `hw.events_from_params` quantizes each kernel onto the pattern and counts, per
    layer, zero-weight products and the shift histogram (the `LayerEvents` schema; the
    bit-exact datapath emulator in `ebsp_jax.arith` records the same counts from real
    activations). Without `PARAMS_PATH` we use the model's freshly initialised weights, which
    are Gaussian: a lower bound on the savings, since trained and ADMM-evolved weights have
    more zeros.
    """),
    code("""
    if PARAMS_PATH:
        flat = hw.load_params(PARAMS_PATH)
    else:
        model = models.get_model(MODEL, num_classes=10 if DATASET != "imagenet" else 1000)
        x = jnp.zeros((1, *models.default_input_shape(MODEL, DATASET)))
        variables = jax.jit(lambda k, x: model.init(k, x, train=False))(
            jax.random.key(0, impl="rbg"), x)
        flat = {"/".join(str(k.key) for k in path): np.asarray(leaf)
                for path, leaf in jax.tree_util.tree_flatten_with_path(variables["params"])[0]}

    ev = hw.events_from_params(flat, wl, bits=6, length=3)
    summary = hw_events.summarize_events(list(ev.values()))
    print(f"{len(ev)} layers: zero-weight products {100 * summary['zero_weight_fraction']:.1f}%, "
          f"shifted {100 * summary['shifted_fraction']:.1f}% of the rest, "
          f"static accumulator bound {summary['acc_bound_bits']} bits "
          "(worst case over any 8-bit activations; no data seen, so no high-water mark)")
    aware = hw.evaluate_network(wl, {"ebsp": accs["ebsp"]}, dataset=DATASET, search=SEARCH,
                                activities=hw_events.activities(ev)).results["ebsp"]
    for cat in ("compute", "total"):
        print(f"EBSP {cat:>7} energy: shape-only {ebsp.energy[cat] * 1e-6:9.3f} uJ, "
              f"data-aware {aware.energy[cat] * 1e-6:9.3f} uJ "
              f"({100 * (1 - aware.energy[cat] / ebsp.energy[cat]):.1f}% less)")
    """),
    md("""
    ## 4. The bit-width × pattern-length Pareto

    We re-build EBSP at equal area for every `(bits, L)` and evaluate the network (what
    `report.sweep_points` does for the command line): a shorter pattern means a smaller LUT and
    shifter, hence cheaper MACs and more PEs in the same area; narrower weights mean less
    memory traffic. We plot both total and on-chip energy, since DRAM can hide the datapath
    differences on small networks. The other axis is accuracy.
    Real accuracies come from training runs (`RESULTS`: `results.json` files written by
    `experiments/fashion_mnist.py` and friends). Without them we plot a cheap proxy: the SQNR of
    Laplace-distributed weights projected onto each grid (notebook 01 shows it tracks the
    accuracy of projected networks).
    """),
    code("""
    t = time.time()
    points = []
    for b in SWEEP_BITS:
        for L in range(1, b):
            acc = hw.build_accelerator("ebsp", pattern_bits=b, pattern_length=L)
            r = hw.evaluate_network(wl, {"ebsp": acc}, dataset=DATASET, search="fast")
            r = r.results["ebsp"]
            points.append({"bits": b, "length": L, "pes": acc.pe_count, "energy_pj": r.energy_pj,
                           "onchip_pj": r.energy_pj - r.energy["dram"], "latency_s": r.latency_s})

    if RESULTS:
        from ebsp_jax.hw import figures          # its import selects the Agg backend ...
        get_ipython().run_line_magic("matplotlib", "inline")   # ... so switch back
        acc_by_pattern = figures.load_accuracies(RESULTS)
        for p in points:
            p["quality"] = acc_by_pattern.get((p["bits"], p["length"]))
        quality_label = "top-1 accuracy"
    else:
        w = jnp.asarray(np.random.default_rng(0).laplace(size=2**14), jnp.float32)
        for p in points:
            f = BitPattern(p["bits"], p["length"])
            err = jnp.mean((w - project(w, f, fit_scale(w, f))) ** 2)
            p["quality"] = float(10 * jnp.log10(jnp.mean(w**2) / err))
        quality_label = "weight SQNR, Laplace (dB) — accuracy proxy"
    print(f"{len(points)} designs in {time.time() - t:.1f} s")

    def pareto_front(pts, key):
        # Points not dominated in (lower energy, higher quality), by increasing energy.
        front, best = [], -np.inf
        for p in sorted(pts, key=lambda p: (p[key], -p["quality"])):
            if p["quality"] > best:
                front.append(p)
                best = p["quality"]
        return front

    pts = [p for p in points if p["quality"] is not None]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for ax, key, title in ((axes[0], "energy_pj", "total energy"),
                           (axes[1], "onchip_pj", "on-chip energy (DRAM excluded)")):
        for p in pts:
            ax.scatter(p[key] * 1e-6, p["quality"], color=f"C{SWEEP_BITS.index(p['bits'])}")
            ax.annotate(f"{p['bits']}b(L{p['length']})", (p[key] * 1e-6, p["quality"]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = pareto_front(pts, key)
        ax.plot([p[key] * 1e-6 for p in front], [p["quality"] for p in front], "k--", lw=0.8,
                label="Pareto front")
        ax.set_xlabel(f"EBSP {title} per image (uJ)")
        ax.set_title(f"{MODEL}: bit width x pattern length", fontsize=10)
        print(f"Pareto front ({title}): " + ", ".join(
            f"{p['bits']}b(L{p['length']}) {p[key] * 1e-6:.3g} uJ" for p in front))
    for name in ("bitfusion", "olaccel", "wax"):
        e = result.results[name].energy_pj * 1e-6
        axes[0].axvline(e, ls=":", color="gray")
        axes[0].text(e, min(p["quality"] for p in pts), name, rotation=90, fontsize=7, va="bottom")
    axes[0].set_ylabel(quality_label)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    plt.show()

    print(f"{'pattern':>8} {'PEs':>5} {'total uJ':>9} {'on-chip uJ':>11} {'latency us':>11} {'quality':>8}")
    for p in pts:
        label = f"{p['bits']}b(L{p['length']})"
        print(f"{label:>8} {p['pes']:>5} {p['energy_pj'] * 1e-6:>9.3f} "
              f"{p['onchip_pj'] * 1e-6:>11.3f} {p['latency_s'] * 1e6:>11.1f} {p['quality']:>8.1f}")
    """),
    md("""
    ## 5. Export to ZigZag and Timeloop

    The same workload and designs can be handed to established design-space explorers, with
    *the same* per-access energies, so their results are comparable with ours:

    * `zigzag_export.write_zigzag_inputs(dir, layers, acc)` writes ZigZag's `workload.yaml`,
      `accelerator.yaml` and `mapping.yaml` (for `zigzag-dse` 3.9.1);
    * `timeloop_export.write_timeloop(dir, layers, acc)` writes Timeloop/Accelergy v0.3
      problem, architecture, constraints and energy/area reference tables (ERT/ART).
    """),
    code("""
    out_dir = tempfile.mkdtemp(prefix="ebsp_hw_")
    zz_paths = zigzag_export.write_zigzag_inputs(os.path.join(out_dir, "zigzag", "ebsp"),
                                                 list(wl.layers), accs["ebsp"])
    tl_paths = timeloop_export.write_timeloop(os.path.join(out_dir, "timeloop", "ebsp"),
                                              list(wl.layers), accs["ebsp"])
    for p in list(zz_paths.values()) + tl_paths[:5]:
        print(os.path.relpath(p, out_dir), f"{os.path.getsize(p):>7,} bytes")
    print(f"... {len(tl_paths)} Timeloop files in all\\n")
    print("".join(open(zz_paths["accelerator"]).readlines()[:24]))
    """),
    md("""
    If `zigzag-dse` is installed, `zigzag_export.run_zigzag` runs ZigZag on one layer with our
    mapping (or lets ZigZag's LOMA search one, `mapping=None`). ZigZag has no leakage, rounds
    transfers to whole words and counts on/off-loading in its latency, so agreement within a
    few tens of percent is the expectation, not identity.
    """),
    code("""
    layer_idx = max(range(len(wl.layers)), key=lambda i: wl.layers[i].macs)
    layer, ours = wl.layers[layer_idx], ebsp.layers[layer_idx]
    if RUN_ZIGZAG and zigzag_export.zigzag_available():
        zz = zigzag_export.run_zigzag(layer, accs["ebsp"], ours.mapping)
        ours_no_leak = ours.energy_pj - ours.energy["leakage"]
        print(f"{layer.name}: {layer.macs:,} MACs, mapping {ours.mapping}")
        print(f"  energy  ours {ours_no_leak * 1e-6:.3f} uJ (no leakage)   ZigZag {zz['energy_pj'] * 1e-6:.3f} uJ")
        print(f"  cycles  ours {ours.cycles:,.0f}   ZigZag {zz['latency_cycles']:,.0f}")
    else:
        print("zigzag-dse not installed (pip install zigzag-dse==3.9.1 six): skipping the cross-check")
    print(f"\\nnotebook ran in {time.time() - T0:.1f} s")
    """),
    md("""
    The command-line version writes the report JSON, the figures (PNG + SVG) and the exports:

    ```bash
    python experiments/hardware.py --model=resnet50 --dataset=imagenet \\
        --pattern_bits=6 --pattern_length=3 --output=runs/hw/report.json \\
        --figures_dir=runs/hw/figures --zigzag_dir=runs/hw/zigzag --timeloop_dir=runs/hw/timeloop \\
        --results=runs/fashion_mnist/results.json   # optional: accuracies for the Pareto plot
    ```

    ## Takeaway

    * At equal area EBSP fits an order of magnitude more PEs than a 16-bit multiplier array, and
      each MAC costs a LUT read, a shift and an add instead of a multiply: in this model EBSP
      beats Eyeriss and WAX clearly on energy and latency.
    * Against the 4-bit designs (Bit Fusion, OLAccel) the outcome depends on the network and on
      DRAM: 6-bit weights move 1.5× the bits of 4-bit ones, and on a small network at batch 1
      DRAM is most of the energy. The on-chip column separates the two effects. With
      `MODEL = "resnet50"` the paper's claims are printed beside the model's numbers; where they
      disagree, the model's assumptions (`ebsp_jax/hw/tech.py`, every figure cited) are the
      place to look.
    * Data-aware costing (real weight codes) lowers EBSP's datapath energy further; trained,
      ADMM-evolved weights have more zeros than the random ones used here.
    * The sweep shows the knob: the pattern length sets the datapath cost and the accuracy
      ceiling (notebook 01), the bit width sets the memory traffic.
    * Everything exports to ZigZag and Timeloop with the same energy tables, for independent
      cross-checks.
    """),
]

NOTEBOOKS = {
    "01_bit_sparsity_patterns.ipynb": NB01,
    "02_admm_training.ipynb": NB02,
    "03_hardware.ipynb": NB03,
}


def build(cells) -> nbformat.NotebookNode:
  nb = v4.new_notebook()
  nb.cells = cells
  for i, cell in enumerate(nb.cells):   # stable ids: regenerating gives identical files
    cell.id = f"cell-{i:02d}"
  nb.metadata["kernelspec"] = dict(KERNELSPEC)
  nb.metadata["language_info"] = {"name": "python"}
  return nb


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--check", action="store_true", help="exit 1 if a notebook is stale")
  args = parser.parse_args(argv)
  stale = []
  for name, cells in NOTEBOOKS.items():
    nb = build(cells)
    nbformat.validate(nb)
    path = os.path.join(HERE, name)
    text = nbformat.writes(nb)
    if args.check:
      old = open(path).read() if os.path.exists(path) else None
      if old != text:
        stale.append(name)
    else:
      with open(path, "w") as f:
        f.write(text)
      print("wrote", path)
  if stale:
    print("stale (run notebooks/build_notebooks.py):", ", ".join(stale))
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
