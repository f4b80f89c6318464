"""Device mesh, t5x-style logical axis rules, the shardings of state and batches, and
placing host arrays on the mesh.

The mesh has axes ('data', 'model'). Parameters are sharded by their logical axes
(the `params_axes` collection) through the rules below: t5x's standard 1-D
parameter partitioning, extended with the prompt axes. Prompts are small, so their
axes are replicated; batches are split over 'data'.
"""

from typing import Optional, Sequence

import flax
from flax.linen import partitioning as nn_partitioning
import gin
import jax
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec
import numpy as np

Rules = Sequence[tuple[str, Optional[str]]]

# t5x's `standard_logical_axis_rules()` for 1-D parameter partitioning.
T5X_STANDARD_RULES: Rules = (
    ("batch", "data"), ("vocab", "model"), ("embed", None), ("mlp", "model"),
    ("heads", "model"), ("kv", None), ("joined_kv", "model"), ("relpos_buckets", None),
    ("abspos_buckets", None), ("length", None), ("layers", None), ("stack", None),
    ("mlp_activations", None),
)
# The prompt parameters' axes: task, prompt position and rank are never split.
PROMPT_RULES: Rules = (("prompt", None), ("tasks", None), ("rank", None))


@gin.configurable
class Partitioner:
  """Builds the mesh and maps logical axes to NamedShardings.

  `num_partitions` is the size of the 'model' axis (model parallelism); the rest of
  the devices form 'data'. `mesh_shape` (data, model) may be given instead.
  """

  def __init__(self, num_partitions: int = 1,
               mesh_shape: Optional[tuple[int, int]] = None,
               logical_axis_rules: Rules = T5X_STANDARD_RULES + PROMPT_RULES,
               devices: Optional[Sequence[jax.Device]] = None):
    devices = list(devices or jax.devices())
    if mesh_shape is None:
      if len(devices) % num_partitions:
        raise ValueError(f"num_partitions={num_partitions} does not divide the "
                         f"{len(devices)} devices.")
      mesh_shape = (len(devices) // num_partitions, num_partitions)
    if int(np.prod(mesh_shape)) != len(devices):
      raise ValueError(f"mesh_shape {tuple(mesh_shape)} needs {int(np.prod(mesh_shape))} "
                       f"devices; there are {len(devices)}.")
    self.mesh = Mesh(np.asarray(devices).reshape(mesh_shape), ("data", "model"))
    self.rules = tuple(logical_axis_rules)

  @property
  def data_parallelism(self) -> int:
    return self.mesh.shape["data"]

  def sharding(self, logical_axes: Optional[Sequence[Optional[str]]]) -> NamedSharding:
    if logical_axes is None:
      return NamedSharding(self.mesh, PartitionSpec())
    spec = nn_partitioning.logical_to_mesh_axes(logical_axes, self.rules)
    return NamedSharding(self.mesh, spec)

  def param_shardings(self, params_axes):
    """NamedShardings for a params tree, from its `params_axes` collection."""
    names = flax.core.unfreeze(nn_partitioning.get_axis_names(params_axes))
    return jax.tree.map(self.sharding, names, is_leaf=lambda x: isinstance(x, PartitionSpec))

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, PartitionSpec())

  @property
  def batch_sharding(self) -> NamedSharding:
    """Leading (batch) dimension over 'data', everything else replicated."""
    return NamedSharding(self.mesh, PartitionSpec("data"))

  def global_batch(self, local_batch: dict) -> dict:
    """Assembles per-host rows into global arrays split over 'data'."""
    return {k: jax.make_array_from_process_local_data(self.batch_sharding, v)
            for k, v in local_batch.items()}

  def place(self, tree, shardings):
    """Host arrays (identical on every process) -> global arrays with `shardings`."""
    def one(value, sharding):
      value = np.asarray(value)
      return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])
    return jax.tree.map(one, tree, shardings)
