"""Device mesh, t5x-style logical axis rules, the shardings of state and batches, and
placing host arrays on the mesh.

The mesh has axes ('data', 'model'). Parameters are sharded by their logical axes
(the `params_axes` collection), and activations by the logical axes the network pins
at layer boundaries, through t5x's standard rules (1-D by default, 2-D on request),
extended with the prompt axes. Prompts are small, so their axes are replicated;
batches are split over 'data'.
"""

import contextlib
import functools
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

# Axes every rule set maps the same way. 'length' and 'kv' (activations), the position
# buckets and 'layers' (a scanned stack's layer axis) are never split.
_COMMON_RULES: Rules = (
    ("batch", "data"), ("vocab", "model"), ("mlp", "model"), ("heads", "model"),
    ("kv", None), ("joined_kv", "model"), ("relpos_buckets", None),
    ("abspos_buckets", None), ("length", None), ("layers", None), ("stack", None),
    ("mlp_activations", None),
)
# The prompt parameters' axes: task, prompt position and rank are never split.
PROMPT_RULES: Rules = (("prompt", None), ("tasks", None), ("rank", None))


@gin.configurable
def axis_rules(activation_partitioning_dims: int = 1,
               parameter_partitioning_dims: int = 1) -> Rules:
  """t5x's standard rule sets, by how many mesh axes split activations and parameters.

  1 and 1: parameters over 'model' only, activations' embed dimension whole. With
  activation_partitioning_dims=2 the hidden states' embed dimension is split over
  'model' too (the layer inputs remat saves are no longer replicated); with
  parameter_partitioning_dims=2 the parameters' embed dimension is split over 'data'
  (2-D, fsdp-style: gathered layer by layer). A dimension takes the first rule whose mesh
  axis the array has not used yet, so a kernel (embed, mlp) gives 'model' to mlp and
  then embed falls through to 'data' (or stays whole).
  """
  for dims, name in ((activation_partitioning_dims, "activation_partitioning_dims"),
                     (parameter_partitioning_dims, "parameter_partitioning_dims")):
    if dims not in (1, 2):
      raise ValueError(f"{name}={dims}: use 1 or 2.")
  embed: Rules = ()
  if activation_partitioning_dims == 2:
    embed += (("embed", "model"),)
  if parameter_partitioning_dims == 2:
    embed += (("embed", "data"),)
  return _COMMON_RULES + (embed or (("embed", None),)) + PROMPT_RULES


@gin.configurable
class Partitioner:
  """Builds the mesh and maps logical axes to NamedShardings.

  `num_partitions` is the size of the 'model' axis (model parallelism); the rest of
  the devices form 'data'. `mesh_shape` (data, model) may be given instead.
  """

  def __init__(self, num_partitions: int = 1,
               mesh_shape: Optional[tuple[int, int]] = None,
               logical_axis_rules: Optional[Rules] = None,
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
    self.rules = tuple(logical_axis_rules or axis_rules())

  @contextlib.contextmanager
  def activation_rules(self):
    """While a step is traced: activations' sharding constraints resolve by these rules
    on this mesh (`mpt_jax.backbone.layers.constrain`)."""
    with jax.sharding.use_abstract_mesh(self.mesh.abstract_mesh), \
        nn_partitioning.axis_rules(self.rules):
      yield

  def jit(self, fn, **jit_kwargs):
    """`jax.jit(fn)` whose trace runs under `activation_rules`."""
    @functools.wraps(fn)
    def traced(*args, **kwargs):
      with self.activation_rules():
        return fn(*args, **kwargs)
    return jax.jit(traced, **jit_kwargs)

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

  @property
  def bank_batch_sharding(self) -> NamedSharding:
    """A run bank's batch [R, B, ...]: each run's rows (axis 1) over 'data'."""
    return NamedSharding(self.mesh, PartitionSpec(None, "data"))

  def global_batch(self, local_batch: dict) -> dict:
    """Assembles per-host rows into global arrays split over 'data'."""
    return {k: jax.make_array_from_process_local_data(self.batch_sharding, v)
            for k, v in local_batch.items()}

  def global_bank_batch(self, local_batch: dict) -> dict:
    """`global_batch` for a bank's [R, B_local, ...] rows (each host holds its rows of
    every run)."""
    return {k: jax.make_array_from_process_local_data(self.bank_batch_sharding, v)
            for k, v in local_batch.items()}

  def place(self, tree, shardings):
    """Host arrays (identical on every process) -> global arrays with `shardings`."""
    def one(value, sharding):
      value = np.asarray(value)
      return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])
    return jax.tree.map(one, tree, shardings)
