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
# # 05 · Choosing a format per layer under an energy budget
#
# The EBSP paper tunes one knob for the whole network (the pattern length, i.e. the LUT size).
# `ebsp_jax.search` chooses a weight format **per layer** — any bit-sparsity pattern `Bb(LL)`,
# uniform `Bb(L{B-1})` and power-of-two `Bb(L1)` included — so that the network's quantization
# sensitivity is least under a hardware budget, with the hardware model in the loop:
#
# 1. **sensitivity** of each layer to each format, from a trained float model: HAWQ-V3's
#    `Ω[i,k] = Tr(H_i)/n_i · ||Q_k(W_i) − W_i||²` with Hessian traces by Hutchinson
#    (`search.hessian_traces`);
# 2. **costs** from `ebsp_jax.hw`: one EBSP accelerator runs every layer, built for the widest
#    bits, longest pattern and largest shift chosen, so a choice is costed on *the design it
#    needs* (`search.designs`): a long LUT anywhere shrinks the PE array everywhere;
# 3. an **exact solver** (dynamic programming on the Pareto frontier, split by design) for
#    "least sensitivity under an energy budget".
#
# This notebook trains a small float LeNet-5, runs the search, shows the per-layer choice and
# its hardware report, and checks the predicted ordering against the accuracy of the projected
# networks. The full study — 3 seeds, ADMM training of every searched configuration — is
# `experiments/search_sweep.py`; its Pareto figure closes the notebook.

# %% tags=["parameters"]
# Budgets. `EBSP_NOTEBOOK_FAST=1` (set by `tests/notebooks_test.py`) selects the small ones;
# the defaults are the full tutorial.
import os

FAST = os.environ.get("EBSP_NOTEBOOK_FAST", "0") == "1"
FLOAT_STEPS = 150 if FAST else 1500       # float training of LeNet-5 (batch 128)
SENS_EXAMPLES = 256 if FAST else 1024     # training images of the sensitivity loss
PROBES = 4 if FAST else 32                # Hutchinson probes
EVAL_EXAMPLES = 1000 if FAST else 10000   # test images for the projected networks' accuracy
MAPPER = "fast"                           # the hardware mapper's effort (fast | default)
BUDGETS = (0.65, 0.75, 0.85)              # energy budgets, fractions of the all-6b(L3) network

# %%
# %matplotlib inline
import json
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from ebsp_jax import data, hw, models, search
from ebsp_jax.hw import arch
from ebsp_jax.search import designs

T0 = time.time()

# %% [markdown]
# ## 1. A float LeNet-5
#
# The search starts from a trained float model (in the experiments: a training run's
# `--workdir`, read with `ebsp_jax.train.reload.load_float_model`). Here a short Adam run.

# %%
model = models.get_model("lenet5", num_classes=10)
train = data.get_dataset("fashion_mnist", "train", batch_size=128, seed=0, augment=False,
                         num_epochs=None, num_threads=0)
test = [(jnp.asarray(b["image"]), jnp.asarray(b["label"])) for b in data.get_dataset(
    "fashion_mnist", "test", batch_size=500, num_examples=EVAL_EXAMPLES, num_threads=0)]
params = jax.jit(lambda k, x: model.init(k, x, train=False))(
    jax.random.key(0, impl="rbg"), test[0][0][:1])["params"]
tx = optax.adam(2e-3)
opt = tx.init(params)


def loss_fn(p, batch):
    logits = model.apply({"params": p}, batch["image"], train=False)
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()


@jax.jit
def step(p, opt, batch):
    g = jax.grad(loss_fn)(p, batch)
    upd, opt = tx.update(g, opt)
    return optax.apply_updates(p, upd), opt


@jax.jit
def correct(p, x, y):
    return jnp.sum(model.apply({"params": p}, x, train=False).argmax(-1) == y)


def accuracy(p):
    return sum(int(correct(p, x, y)) for x, y in test) / sum(len(y) for _, y in test)


it = iter(train)
t = time.time()
for _ in range(FLOAT_STEPS):
    params, opt = step(params, opt, next(it))
print(f"{FLOAT_STEPS} steps in {time.time() - t:.0f} s: float test accuracy "
      f"{100 * accuracy(params):.2f}% ({EVAL_EXAMPLES} images)")

# %% [markdown]
# ## 2. Sensitivity of every layer to every format
#
# The layers are the parameter tree's kernels (`conv_init`, `conv1`, `fc1`, `fc2`, `head`), the
# names the hardware workload, `--layer_formats` files and the training rule share. The
# candidates: EBSP patterns, uniform and power-of-two formats (`search.CANDIDATE_SETS`).

# %%
workload = hw.model_workload("lenet5", "fashion_mnist")
layers = search.costs.workload_layer_names(workload)
formats = search.parse_formats("default")
sample = [{"image": np.asarray(b["image"]), "label": np.asarray(b["label"])}
          for b in data.get_dataset("fashion_mnist", "train", batch_size=256, seed=1,
                                    augment=False, num_examples=SENS_EXAMPLES, num_epochs=1,
                                    drop_remainder=False, num_threads=0)]
t = time.time()
traces = search.hessian_traces(loss_fn, params, sample, layers, num_probes=PROBES, seed=0)
errors = search.quantization_error(search.sensitivity.kernels(params, layers), formats)
omega = search.sensitivity_matrix(traces, errors)
print(f"traces in {time.time() - t:.0f} s")
for l, tr, se, n in zip(layers, traces.trace, traces.stderr, traces.num_weights):
    print(f"  {l:<10} Tr(H) = {tr:8.2f} ± {se:5.2f}   {n:>6} weights   Tr(H)/n = {tr / n:.2e}")

fig, ax = plt.subplots(figsize=(11, 2.8))
im = ax.imshow(np.log10(omega), aspect="auto", cmap="viridis")
ax.set_xticks(range(len(formats)), [str(f) for f in formats], rotation=60, fontsize=8)
ax.set_yticks(range(len(layers)), layers)
fig.colorbar(im, label="log10 Ω (predicted loss increase × 2)")
ax.set_title("sensitivity Ω[layer, format]: fc1 holds 78% of the weights but is the least "
             "sensitive per weight", fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Costs on the design each choice needs
#
# `designs.design_costs` lists every EBSP design some choice needs (widest bits, longest
# pattern, largest shift) and costs each layer in each fitting format on it
# (`hw.evaluate_network(..., layer_formats=...)`: each layer moves its own weight width and
# fills only the LUT entries its pattern reads). The all-one-format networks are costed on their
# own designs (`search.layer_costs`), e.g. the reference all-6b(L3).

# %%
allowed = np.ones((len(layers), len(formats)), bool)
t = time.time()
tables = designs.design_costs(workload, formats, allowed, search=MAPPER)
single = search.layer_costs(workload, formats, search=MAPPER)
print(f"{len(tables)} designs costed in {time.time() - t:.0f} s")
ref = formats.index(search.parse_format("6b(L3)"))
ref_energy = single.totals([ref] * len(layers))["energy_pj"]
ref_latency = single.totals([ref] * len(layers))["latency_s"]
print(f"all-6b(L3): {ref_energy / 1e6:.3f} uJ per image")
for k in range(len(formats)):
    tot = single.totals([k] * len(layers))
    print(f"  all-{str(formats[k]):<7} energy x{tot['energy_pj'] / ref_energy:.3f}  "
          f"latency x{tot['latency_s'] / ref_latency:.2f}")

# %% [markdown]
# ## 4. The exact search and its per-layer choice
#
# `designs.frontier` is the exact Pareto frontier of (energy, Σ Ω) over all choices, each on
# its own design; `designs.solve` reads the least-sensitivity choice under a budget off it. The
# same search restricted to uniform formats (HAWQ-style) and to power-of-two formats shows what
# the patterns add.

# %%
families = {"mixed": "default", "uniform": "uniform", "power_of_two": "power_of_two"}
fronts, choices = {}, {}
for fam, cands in families.items():
    keep = set(search.parse_formats(cands))
    ok = allowed & np.array([f in keep for f in formats])[None, :]
    fronts[fam] = designs.frontier(tables, omega, "energy", ok)
    for b in BUDGETS:
        sol = designs.solve(fronts[fam], b * ref_energy)
        choices[fam, b] = sol
rows = []
for (fam, b), sol in choices.items():
    rows.append([fam, f"{b:.2f}"] + [str(formats[k]) for k in sol.choice]
                + [f"{sol.cost / ref_energy:.3f}", f"{sol.sensitivity:.2e}",
                   f"<={sol.design[0]}b L<={sol.design[1]} s<={sol.design[2]}"])
head = ["family", "budget"] + list(layers) + ["energy", "Σ Ω", "design"]
print(" | ".join(head))
for r in rows:
    print(" | ".join(r))

# %% [markdown]
# The hardware report of one searched configuration: `arch.build_ebsp_for` builds the one
# design for its formats and `hw.evaluate_network(..., layer_formats=...)` costs each layer in
# its own format — what `experiments/hardware.py --layer_formats=search.json` prints; its total
# is the searched cost.

# %%
sol = choices["mixed", 0.75]
chosen = {l: formats[k] for l, k in zip(layers, sol.choice)}
acc = arch.build_ebsp_for(chosen.values())
res = hw.evaluate_network(workload, {"ebsp": acc}, search=MAPPER, layer_formats=chosen)
print(hw.format_table(res))
rep = hw.report_json(res)
for row in rep["layers"]:
    e = row["ebsp"]
    print(f"  {row['name']:<10} {e['format']:<7} {e['energy_pj'] / 1e3:8.1f} nJ  "
          f"{e['cycles']:>8.0f} cycles  PE {e['pe_energy_per_mac_pj']:.3f} pJ/MAC")
print(f"searched cost {sol.cost / 1e6:.4f} uJ, report {res.results['ebsp'].energy_pj / 1e6:.4f} uJ")
print("the file the trainers and hardware.py take:",
      json.dumps({"layers": {l: str(f) for l, f in chosen.items()}}))

# %% [markdown]
# ## 5. Does the prediction order the networks? Accuracy after projection
#
# Without retraining, each frontier configuration's weights are projected onto their formats
# (`search.sensitivity.projected_kernels`, per-channel scales) and evaluated. The study proper
# trains every configuration with ADMM (`experiments/search_sweep.py`); projection alone is
# harsher but cheap, and shows whether Σ Ω ranks configurations of equal energy.

# %%
proj = {f: dict(zip(layers, search.sensitivity.projected_kernels(
    search.sensitivity.kernels(params, layers), f))) for f in formats}


def projected_accuracy(choice):
    new = {l: proj[formats[k]][l] for l, k in zip(layers, choice)}
    return accuracy(search.sensitivity.replace_kernels(params, new))


fig, ax = plt.subplots(figsize=(9, 5))
styles = {"mixed": ("tab:blue", "s"), "uniform": ("tab:orange", "^"),
          "power_of_two": ("tab:green", "D")}
for fam, f in fronts.items():
    pick = np.unique(np.linspace(0, len(f) - 1, min(len(f), 12)).astype(int))
    xs = f.cost[pick] / 1e6
    ys = [100 * projected_accuracy(f.choice[i]) for i in pick]
    c, m = styles[fam]
    ax.plot(xs, ys, marker=m, color=c, label=f"{fam} search frontier ({len(f)} points)")
for k, fmt in enumerate(formats):
    if fmt.bits <= 6:
        e = single.totals([k] * len(layers))["energy_pj"] / 1e6
        ax.plot(e, 100 * projected_accuracy([k] * len(layers)), "o", color="0.4", ms=4)
        ax.annotate(str(fmt), (e, 100 * projected_accuracy([k] * len(layers))), fontsize=6,
                    xytext=(3, 2), textcoords="offset points")
ax.set_xlabel("modelled EBSP energy per image, µJ")
ax.set_ylabel("test accuracy after projection, % (no retraining)")
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
ax.set_title("projected networks: frontier choices vs single formats (grey)", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 6. The study: 3 seeds, ADMM-trained
#
# `experiments/search_sweep.py` runs the full study (float models, searches of the three
# families at several budgets, ADMM training of every configuration, integer-mode top-1); the
# results and their discussion are in `docs/results/search/README.md`. Its figure:

# %%
from IPython.display import Image, display  # noqa: E402

figure = os.path.join("docs", "figures", "pareto_lenet5_fashion_mnist.png")
if os.path.exists(figure):
    display(Image(filename=figure, width=800))
print(f"notebook run time {time.time() - T0:.0f} s")

# %% [markdown]
# ## On your own model
#
# The same three calls work for any network the hardware model can trace: sensitivity from a
# trained float model (`search.hessian_traces` or `--sensitivity=fisher`), costs on the design
# each choice needs (`search.designs`), and the exact solver (`search.min_sensitivity`,
# `search.min_cost`) under an energy, latency or
# weight-storage budget. From the command line: `experiments/search.py --model=... --dataset=...
# --pretrained=<float run> --budget=energy:0.8 --output=formats.json`, then train the chosen
# formats with `--layer_formats=formats.json` and cost them with
# `experiments/hardware.py --layer_formats=formats.json`.
