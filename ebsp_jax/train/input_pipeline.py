"""The training library's view of the data: a step-indexed train stream and eval batches.

The data come from :func:`ebsp_jax.data.get_dataset`. The trainer needs two things from it: the
global batch of training step ``t`` for any ``t`` (``start_step``: deterministic per seed, so a
resumed run sees exactly the batches an uninterrupted run would) and the evaluation split in
batches. In multi-host training each process loads only its rows of every global batch
(``train_rows`` / ``eval_rows``, from :func:`ebsp_jax.train.sharding.process_rows`).
``DataInfo.fingerprint`` identifies the examples of both splits (the content, not the path), so
a run can refuse to resume on other data. With ``normalize_on_device`` the batches hold uint8
images and :attr:`Data.model_input` normalizes them on the accelerator (inside the jitted steps).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Dict, Iterable, Iterator, Mapping, Optional, Tuple

import numpy as np

from ebsp_jax import data as data_lib
from ebsp_jax.data import device as device_data
from ebsp_jax.train.config import TrainConfig

Batch = Dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class DataInfo:
  """Sizes and origin of the training/evaluation data of one run."""
  num_train: int           # training examples used (after the --train_examples cap)
  num_eval: int            # evaluation examples used
  num_classes: int
  input_shape: Tuple[int, int, int]
  steps_per_epoch: int
  source: str              # where the data were found
  fingerprint: Mapping[str, str]  # split ('train', 'test') -> Dataset.fingerprint()


class Data:
  """Train stream + eval batches for a config (fails fast if the data are missing).

  Args:
    cfg: the configuration.
    train_rows / eval_rows: ``(start, stop)``: the rows of every global training / evaluation
      batch this process loads (None: whole batches).

  Attributes:
    model_input: images of these batches -> the model's float input (traceable; apply it
      wherever a batch reaches a model): uint8 images (``cfg.normalize_on_device``) normalized
      with the dataset's mean/std, float images unchanged
      (:func:`ebsp_jax.data.device.model_input`).
  """

  def __init__(self, cfg: TrainConfig, train_rows: Optional[Tuple[int, int]] = None,
               eval_rows: Optional[Tuple[int, int]] = None):
    self.cfg = cfg
    self.train_rows, self.eval_rows = train_rows, eval_rows
    spec = data_lib.get_spec(cfg.dataset)
    self.model_input = functools.partial(device_data.model_input, mean=spec.mean, std=spec.std)
    train = self._train(0)
    ev = self._eval()
    self.info = DataInfo(int(train.num_examples), int(ev.num_examples), int(train.num_classes),
                         tuple(train.input_shape), int(train.steps_per_epoch),
                         str(getattr(train, "source_description", "")),
                         {"train": train.fingerprint(), "test": ev.fingerprint()})

  def _train(self, start_step: int):
    c = self.cfg
    return data_lib.get_dataset(c.dataset, split="train", data_dir=c.data_dir,
                                batch_size=c.batch_size, shuffle=True, seed=c.seed,
                                augment=c.augment, num_examples=c.train_examples or None,
                                drop_remainder=True, start_step=start_step, num_epochs=None,
                                rows=self.train_rows, num_threads=c.data_workers,
                                normalize=not c.normalize_on_device)

  def _eval(self):
    c = self.cfg
    return data_lib.get_dataset(c.dataset, split="test", data_dir=c.data_dir,
                                batch_size=c.eval_batch_size, shuffle=False, seed=0,
                                augment=False, num_examples=c.eval_examples or None,
                                drop_remainder=False, start_step=0, num_epochs=1,
                                rows=self.eval_rows, num_threads=c.data_workers,
                                normalize=not c.normalize_on_device)

  def train_iter(self, start_step: int) -> Iterator[Batch]:
    """Batches of steps ``start_step, start_step + 1, ...`` (endless; this process's rows;
    uint8 images with ``normalize_on_device``: pass them through :attr:`model_input`)."""
    return iter(self._train(start_step))

  def eval_batches(self) -> Iterable[Batch]:
    """The evaluation split in batches of at most ``eval_batch_size`` (the last may be short;
    this process's rows of each, possibly none; uint8 images with ``normalize_on_device``:
    pass them through :attr:`model_input`); ``len()`` is the number of batches."""
    return self._eval()

  def example_batch(self) -> Batch:
    """A 2-example batch of zeros for model initialisation."""
    return {"image": np.zeros((2,) + tuple(self.info.input_shape), np.float32),
            "label": np.zeros((2,), np.int32)}
