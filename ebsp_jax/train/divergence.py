"""Divergence: a run stops at the first non-finite loss or state, and warns on a runaway loss.

Every training step reports, inside its jitted computation, whether its loss and the state it
produced (parameters, model and optimizer state) are finite (:func:`finite_flags`). The host
collects those flags and the losses without waiting for them (:class:`Monitor`) and reads them
where it synchronizes anyway: metric writes, checkpoints and the end of a phase, which are the
same steps in every process. The first non-finite step raises :class:`DivergenceError` naming
the phase and the step before anything from that step on is saved, so the last checkpoint holds
finite values and no results are written. A finite loss above :data:`GROWTH_FACTOR` times its
start (the phase's first loss, at least ``ln(num_classes)``, the loss of a uniform guess) gives
one warning per phase.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ebsp_jax.train import files

PyTree = Any
#: A loss this many times its start means the run is diverging (warned once per phase).
GROWTH_FACTOR = 10.0
#: The metrics keys :func:`finite_flags` adds to a training step's metrics.
FLAG_KEYS = ("finite_loss", "finite_state")


class DivergenceError(RuntimeError):
  """The run produced a non-finite loss or state (one line: phase, step, what was kept)."""


def tree_all_finite(tree: PyTree) -> jax.Array:
  """Scalar bool: the float32 sum of every float leaf of ``tree`` is finite (traceable).

  False when some value is NaN or infinite (they propagate through the sum), and also when the
  sum overflows float32 (values near 3e38: no trained model's); one reduction per leaf and a
  scalar sum, which compiles faster than an ``all(isfinite)`` per leaf.
  """
  sums = [jnp.sum(x, dtype=jnp.float32) for x in jax.tree_util.tree_leaves(tree)
          if jnp.issubdtype(jnp.result_type(x), jnp.floating)]
  return jnp.isfinite(sum(sums)) if sums else jnp.bool_(True)


def host_all_finite(tree: PyTree) -> bool:
  """Whether every inexact leaf of ``tree`` is finite, computed on host copies (no compilation;
  replicated arrays of several processes: this process's copy)."""
  for x in jax.tree_util.tree_leaves(tree):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      x = x.addressable_data(0)
    if jnp.issubdtype(jnp.result_type(x), jnp.inexact) and not np.isfinite(np.asarray(x)).all():
      return False
  return True


def finite_flags(loss: jax.Array, *trees: PyTree) -> Dict[str, jax.Array]:
  """``{'finite_loss': bool, 'finite_state': bool}`` of one step (call it inside the step)."""
  return {"finite_loss": jnp.isfinite(loss), "finite_state": tree_all_finite(trees)}


def pop_flags(metrics: Mapping[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
  """``(metrics without the flags, the flags)``."""
  rest = {k: v for k, v in metrics.items() if k not in FLAG_KEYS}
  return rest, {k: metrics[k] for k in FLAG_KEYS}


class Monitor:
  """Watches one phase's steps: ``record`` every step (no wait), ``check`` at sync points.

  Args:
    phase: the phase name (in messages).
    floor: the smallest loss the growth warning measures from (``ln(num_classes)``).
    advice: called when the run diverged; what was kept and what to do (one line).
  """

  def __init__(self, phase: str, floor: float, advice: Callable[[], str]):
    self.phase, self.floor, self.advice = phase, floor, advice
    self._pending: List[Tuple[int, Any, Any, Any]] = []
    self.start: Optional[float] = None
    self.warned = False

  def record(self, step: int, loss: jax.Array, flags: Mapping[str, jax.Array]) -> None:
    """Notes step ``step``'s (device) loss and flags; ``step`` counts the steps done."""
    self._pending.append((step, loss, flags["finite_loss"], flags["finite_state"]))

  def check(self) -> Optional[str]:
    """Reads what was recorded since the last check (every process at the same steps).

    Returns:
      A one-line warning the first time the loss exceeds ``GROWTH_FACTOR`` x its start, else
      None.

    Raises:
      DivergenceError: a recorded step had a non-finite loss or state (the first such step).
    """
    pending, self._pending = jax.device_get(self._pending), []
    warning = None
    for step, loss, ok_loss, ok_state in pending:
      loss = float(loss)
      if not (bool(ok_loss) and bool(ok_state)):
        what = (f"the loss is {loss}" if not ok_loss else f"the loss is {loss:.4g}")
        what += (" and the parameters or optimizer state are no longer finite" if not ok_state
                 else "")
        raise DivergenceError(f"training diverged at step {step} (phase '{self.phase}'): "
                              f"{what}; {self.advice()}")
      if self.start is None:
        self.start = max(loss, self.floor)
      if not self.warned and loss > GROWTH_FACTOR * self.start:
        self.warned = True
        warning = (f"the {self.phase} loss grew to {loss:.4g} at step {step}, "
                   f"{loss / self.start:.3g} x its start ({self.start:.4g}): the run is probably "
                   "diverging (a lower learning rate may help)")
    return warning


def check_finite_results(results: Mapping[str, Any], where: str,
                         advice: Callable[[], str]) -> None:
  """Raises :class:`DivergenceError` (``where``, the key, ``advice()``) if ``results``
  (JSON-like) holds NaN or an infinity."""
  bad = files.first_nonfinite(results)
  if bad is not None:
    value = results
    for k in bad.split("/"):
      value = value[int(k)] if isinstance(value, (list, tuple)) else value[k]
    raise DivergenceError(f"{where}: '{bad}' is {value}; {advice()}")


def advice(cfg: Any, phase: str, last_checkpoint: Optional[str], ckpt_dir: str) -> str:
  """The tail of a :class:`DivergenceError`: what was kept and what to do.

  Args:
    cfg: the run's ``TrainConfig`` (its learning rates).
    phase: the phase that diverged.
    last_checkpoint: a description of the last checkpoint (None: none was saved).
    ckpt_dir: where the checkpoints are.
  """
  kept = (f"the last checkpoint ({last_checkpoint}) in {ckpt_dir} holds finite values"
          if last_checkpoint else "no checkpoint was saved")
  flag, lr = {"admm": ("admm_learning_rate", cfg.effective_admm_lr),
              "finetune": ("finetune_learning_rate", cfg.effective_finetune_lr)
              }.get(phase, ("learning_rate", cfg.learning_rate))
  return (f"nothing from that step on was saved ({kept}) and no results were written; the same "
          f"command would diverge again: start over in another --workdir with a lower --{flag} "
          f"(now {lr:g})")


def uniform_loss(num_classes: int) -> float:
  """``ln(num_classes)``: the cross-entropy of a uniform guess."""
  return math.log(max(num_classes, 2))
