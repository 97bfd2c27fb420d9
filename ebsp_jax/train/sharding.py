"""Data parallelism with ``jax.sharding``: a 1-D ``data`` mesh over every visible device.

Parameters and optimizer state are replicated (``PartitionSpec()``); batches are split along
their leading axis (``PartitionSpec('data')``). ``jit`` then runs one SPMD program whose batch
reductions (the mean loss, batch-norm statistics, activation ranges) are global, so results equal
a one-device run up to float summation order. Multi-host: call :func:`initialize_distributed`
first; every process feeds its own slice of the global batch
(:func:`jax.make_array_from_process_local_data`).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

PyTree = Any
DATA_AXIS = "data"


def initialize_distributed(coordinator_address: Optional[str] = None,
                           num_processes: Optional[int] = None,
                           process_id: Optional[int] = None) -> None:
  """``jax.distributed.initialize`` (arguments None: auto-detected from the cluster env)."""
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh named ``data`` over ``devices`` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding that puts a full copy on every device of ``mesh`` (params, optimizer state)."""
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding that splits the leading (batch) axis over the mesh's data axis."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(global_batch: int, mesh: Mesh, what: str = "batch_size") -> None:
  """Raises a one-line ValueError unless ``global_batch`` divides over devices and processes."""
  n = mesh.devices.size
  if global_batch % n:
    raise ValueError(f"--{what}={global_batch} is not divisible by the {n} devices")
  if global_batch % jax.process_count():
    raise ValueError(f"--{what}={global_batch} is not divisible by the {jax.process_count()} processes")


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
  """Places every array of ``tree`` on all devices of ``mesh`` (``None`` leaves kept)."""
  sharding = replicated(mesh)
  return jax.tree_util.tree_map(lambda x: jax.device_put(x, sharding), tree)


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> Mapping[str, jax.Array]:
  """A host batch (the GLOBAL batch, identical on every process) as arrays split on ``data``.

  Each process contributes its contiguous slice, so multi-host runs see the same global batch
  as a single-host run.
  """
  sharding = batch_sharding(mesh)
  nproc, pid = jax.process_count(), jax.process_index()

  def put(x):
    x = np.asarray(x)
    if nproc == 1:
      return jax.device_put(x, sharding)
    per = x.shape[0] // nproc
    local = x[pid * per:(pid + 1) * per]
    return jax.make_array_from_process_local_data(sharding, local, x.shape)

  return {k: put(v) for k, v in batch.items()}
