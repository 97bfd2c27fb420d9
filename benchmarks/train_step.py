"""Time of one ADMM + straight-through train step against one float train step (issue 14 item 4).

Not a test. Builds the two steps the trainer runs (``ebsp_jax.train.steps.train_step``, the
optimizers of the float and ADMM phases (``train/phases.py``): weight decay + SGD with momentum;
ADMM = ``admm.admm(rule)`` chained in front, the model with 8-bit fake-quantized activations,
forward on the projected weights with a straight-through gradient), on random images and
labels, and times them interleaved (round robin), one jitted step per call, the state fed back
(so the ADMM Z-step runs every ``--update-every`` steps, as in training, and its cost is in
the mean). Reports the median and mean ms per step and images/s of each, and their ratio
(target of issue 14: ADMM <= 1.3x float).

Usage (GPU: ResNet-50 at batch 256, ~2 min with compiles)::

    python3 -m benchmarks.train_step --model resnet50 --batch 256 --json $OUT/train_step.json

CPU smoke test (seconds)::

    python -m benchmarks.train_step --model lenet5 --batch 8 --image-size 28 --channels 1 \
        --repeats 3 --json /tmp/train_step.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import device_description  # noqa: E402


def _kernel_mask(params):
  return jax.tree_util.tree_map(lambda x: x.ndim > 1, params)


def build(model_name: str, batch: int, image_size: int, channels: int, num_classes: int,
          update_every: int, pattern_bits: int = 6, pattern_length: int = 3):
  """``{"float": (step, state), "admm": (step, state)}`` and the batch (on the device)."""
  from ebsp_jax import admm as admm_lib
  from ebsp_jax import models, quant
  from ebsp_jax.numerics import BitPattern, make_rule
  from ebsp_jax.train.steps import TrainState, train_step
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.random((batch, image_size, image_size, channels), np.float32))
  labels = jnp.asarray(rng.integers(0, num_classes, batch), jnp.int32)
  data = {"image": images, "label": labels}
  fmodel = models.get_model(model_name, num_classes=num_classes)
  qmodel = models.get_model(model_name, num_classes=num_classes,
                            **quant.fake_quant_injection(8))
  variables = dict(fmodel.init(jax.random.PRNGKey(0), images[:2], train=False))
  params = variables.pop("params")
  rule = make_rule(BitPattern(pattern_bits, pattern_length))
  float_tx = optax.chain(optax.add_decayed_weights(5e-4, _kernel_mask),
                         optax.sgd(0.1, momentum=0.9, nesterov=True))
  admm_tx = optax.chain(admm_lib.admm(rule, rho=1e-3, update_every=update_every),
                        optax.add_decayed_weights(5e-4, _kernel_mask),
                        optax.sgd(0.01, momentum=0.9, nesterov=True))
  qvars = qmodel.init(jax.random.PRNGKey(0), images[:2], train=False)
  out = {}
  for phase, model, tx, extra in (("float", fmodel, float_tx, {}),
                                  ("admm", qmodel, admm_tx,
                                   {"quant_stats": qvars["quant_stats"]})):
    # Own copies: each step donates its state's buffers.
    own = jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True),
                                 (params, {**variables, **extra}))
    state = TrainState(step=jnp.zeros((), jnp.int32), params=own[0], model_state=own[1],
                       opt_state=tx.init(own[0]), rng=jax.random.PRNGKey(1), phase=phase)
    fn = jax.jit(functools.partial(train_step, apply_fn=model.apply, tx=tx,
                                   straight_through=phase == "admm"), donate_argnums=0)
    out[phase] = (fn, state)
  return out, data


def run(args) -> dict:
  steps, data = build(args.model, args.batch, args.image_size, args.channels,
                      args.num_classes, args.update_every)
  states, fns, compile_s = {}, {}, {}
  for phase, (fn, state) in steps.items():
    t = time.perf_counter()
    state, metrics = fn(state, data)
    jax.block_until_ready(state)
    compile_s[phase] = time.perf_counter() - t
    states[phase], fns[phase] = state, fn
    print(f"[train_step] {phase}: compiled + first step {compile_s[phase]:.1f} s, "
          f"loss {float(metrics['loss']):.3f}", flush=True)
  times = {p: [] for p in steps}
  for _ in range(args.repeats):
    for phase in steps:
      t = time.perf_counter()
      states[phase], _ = fns[phase](states[phase], data)
      jax.block_until_ready(states[phase])
      times[phase].append(time.perf_counter() - t)
  res = dict(device=device_description(), date=time.strftime("%Y-%m-%d"),
             jax=jax.__version__, backend=jax.default_backend(), model=args.model,
             batch=args.batch, image_size=args.image_size, num_classes=args.num_classes,
             update_every=args.update_every, repeats=args.repeats, compile_s=compile_s)
  for phase, v in times.items():
    med = statistics.median(v)
    res[f"{phase}_step_ms"] = med * 1e3
    res[f"{phase}_step_mean_ms"] = statistics.fmean(v) * 1e3
    res[f"{phase}_img_s"] = args.batch / med
  res["admm_over_float"] = res["admm_step_ms"] / res["float_step_ms"]
  print(f"[train_step] {args.model} batch {args.batch}: float {res['float_step_ms']:.2f} ms, "
        f"ADMM+STE {res['admm_step_ms']:.2f} ms per step (x{res['admm_over_float']:.2f}; "
        f"means {res['float_step_mean_ms']:.2f} / {res['admm_step_mean_ms']:.2f} ms)")
  return res


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--model", default="resnet50")
  ap.add_argument("--batch", type=int, default=256)
  ap.add_argument("--image-size", type=int, default=224)
  ap.add_argument("--channels", type=int, default=3)
  ap.add_argument("--num-classes", type=int, default=1000)
  ap.add_argument("--update-every", type=int, default=100,
                  help="ADMM Z-step period (TrainConfig.admm_update_every's default)")
  ap.add_argument("--repeats", type=int, default=20, help="timed steps per phase")
  ap.add_argument("--json", default=None)
  args = ap.parse_args(argv)
  for name in ("batch", "image_size", "channels", "num_classes", "update_every", "repeats"):
    if getattr(args, name) < 1:
      ap.error(f"--{name.replace('_', '-')} must be >= 1")
  res = run(args)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(res, f, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
  main()
