"""The shared training library behind ``experiments/*.py``.

* :mod:`.config` — :class:`TrainConfig` (frozen, validated).
* :mod:`.steps` — :class:`TrainState`, pure ``train_step`` / ``eval_step``.
* :mod:`.trainer` — the pipeline (float → ADMM → projection + fine-tune → evaluation), resumable:
  :class:`Experiment` coordinates :mod:`.phases` (schedule, optimizer per phase, ρ policy),
  :mod:`.resume` (checkpoint restore, fresh start or resume), :mod:`.pretrained` (the
  ``--pretrained`` float model), :mod:`.loop` (the training loop and output files) and
  :mod:`.phase_change` (evaluations at phase changes, final results).
* :mod:`.export_model` — the run's quantized model (``quantized_model.safetensors``), the one
  hand-off to the hardware model; :mod:`.export_run` writes it for older runs.
* :mod:`.ptq_run` — ``--ptq``: post-training quantization from the command line.
* :mod:`.checkpoint` — orbax checkpoints, verified on restore (:mod:`.integrity` checksums);
  :mod:`.sharding` — data parallelism.
* :mod:`.workdir` — the workdir claim (``run.json``); :mod:`.divergence` — non-finite values stop
  a run; :mod:`.files` — atomic, strict (no NaN) output files.
* :mod:`.metrics` — TensorBoard events (tensorboardX: scalars, weight histograms),
  metrics.jsonl, the progress line.
* :mod:`.evaluation` — float / fake-quant / integer evaluation, pattern statistics.
* :mod:`.reload` — :func:`load_run`: a run's experiment and latest state, read-only.
"""

from ebsp_jax.train.checkpoint import CheckpointError, Checkpointer
from ebsp_jax.train.config import TrainConfig
from ebsp_jax.train.steps import TrainState, eval_step, train_step
from ebsp_jax.train.reload import load_run
from ebsp_jax.train.trainer import Experiment, run, weight_rule
