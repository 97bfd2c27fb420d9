"""Data parallelism with ``jax.sharding``: a 1-D ``data`` mesh over every visible device.

Parameters and optimizer state are replicated (``PartitionSpec()``); batches are split along
their leading axis (``PartitionSpec('data')``). ``jit`` then runs one SPMD program whose batch
reductions (the mean loss, batch-norm statistics, activation ranges) are global, so results equal
a one-device run up to float summation order.

Multi-host (several processes, e.g. one per host): every process calls
:func:`initialize_distributed` before anything else touches jax, then runs the same program.
The mesh spans the devices of all processes; each process loads only its own rows of every global
batch (:func:`process_rows`) and contributes them with :func:`shard_local_batch`
(``jax.make_array_from_process_local_data``), so the global batch, and the results, are those of
a single-host run on as many devices. Host-side work on replicated values (integer evaluation,
statistics) uses process-local copies (:func:`to_local`); counts that each process computes over
its part of the data are added with :func:`sum_over_processes`.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Tuple

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

PyTree = Any
DATA_AXIS = "data"


def initialize_distributed(coordinator_address: Optional[str] = None,
                           num_processes: Optional[int] = None,
                           process_id: Optional[int] = None) -> None:
  """``jax.distributed.initialize``: call it in every process before any other jax call.

  Arguments left None are auto-detected where jax knows the cluster (Slurm, Open MPI, TPU pods;
  ``$JAX_COORDINATOR_ADDRESS`` for the address); elsewhere (e.g. several processes on one
  machine, or hosts started by hand) give all three. On CPU, cross-process collectives need an
  implementation: gloo is selected where none is.
  """
  if num_processes is not None and num_processes < 1:
    raise ValueError(f"--num_processes={num_processes}: must be >= 1")
  if process_id is not None and (process_id < 0 or (num_processes is not None
                                                     and process_id >= num_processes)):
    raise ValueError(f"--process_id={process_id}: must be in [0, --num_processes="
                     f"{num_processes})")
  option = "jax_cpu_collectives_implementation"
  if option in jax.config.values and jax.config.values[option] in (None, "", "none"):
    jax.config.update(option, "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address or None,
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


def process_rows(mesh: Mesh, global_size: int) -> Tuple[int, int]:
  """``(start, stop)``: the rows of a ``global_size`` batch this process's devices hold.

  Read off the batch sharding (not assumed from the process index), so any device order of the
  mesh is handled; ``(0, global_size)`` on a single process.

  Raises:
    ValueError: the rows of this process are not one contiguous block (a mesh that interleaves
      the devices of different processes).
  """
  if jax.process_count() == 1:
    return 0, global_size
  index_map = batch_sharding(mesh).addressable_devices_indices_map((global_size,))
  spans = sorted({(s[0].start or 0, global_size if s[0].stop is None else s[0].stop)
                  for s in index_map.values()})
  start, stop = spans[0][0], spans[-1][1]
  if sum(b - a for a, b in spans) != stop - start:
    raise ValueError(f"the devices of process {jax.process_index()} hold rows {spans} of the "
                     "batch, not one contiguous block; order the mesh's devices by process")
  return start, stop


def shard_local_batch(batch: Mapping[str, np.ndarray], mesh: Mesh, global_size: int
                      ) -> Mapping[str, jax.Array]:
  """This process's rows (:func:`process_rows`) of a global batch, as global arrays on ``data``.

  Every process passes its own rows; together they form the ``global_size`` batch.
  """
  sharding = batch_sharding(mesh)

  def put(x):
    x = np.asarray(x)
    shape = (global_size,) + x.shape[1:]
    if jax.process_count() == 1:
      if x.shape != shape:
        raise ValueError(f"batch of {x.shape[0]} rows, expected {global_size}")
      return jax.device_put(x, sharding)
    return jax.make_array_from_process_local_data(sharding, x, shape)

  return {k: put(v) for k, v in batch.items()}


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> Mapping[str, jax.Array]:
  """A host batch (the GLOBAL batch, identical on every process) as arrays split on ``data``.

  Each process contributes its rows, so multi-host runs see the same global batch as a
  single-host run (loading only the rows, :func:`shard_local_batch`, is cheaper).
  """
  sizes = {len(v) for v in batch.values()}
  if len(sizes) != 1:
    raise ValueError(f"batch arrays of different lengths {sorted(sizes)}")
  (size,) = sizes
  start, stop = process_rows(mesh, size)
  return shard_local_batch({k: np.asarray(v)[start:stop] for k, v in batch.items()}, mesh, size)


def to_local(tree: PyTree) -> PyTree:
  """Process-local copies of the replicated arrays of ``tree`` (unchanged on one process).

  For host-side work that mixes them with process-local data (integer evaluation, statistics):
  a global array spanning other processes' devices cannot enter such computations, and an eager
  op on it would be a collective every process must run at the same time.
  """
  if jax.process_count() == 1:
    return tree

  def local(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
      return x
    if not x.is_fully_replicated:
      raise ValueError(f"to_local: array {x.shape} is split over processes, not replicated")
    return x.addressable_data(0)

  return jax.tree_util.tree_map(local, tree)


def sum_over_processes(values: Sequence[int]) -> np.ndarray:
  """The elementwise sum of integer ``values`` (below 2**31) over all processes.

  Every process must call it (a collective).
  """
  values = np.asarray(values, np.int32)
  if jax.process_count() == 1:
    return values
  return np.asarray(multihost_utils.process_allgather(values)).reshape(
      (jax.process_count(),) + values.shape).sum(0)


def barrier(name: str) -> None:
  """Waits until every process gets here (a no-op with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)
