"""Meshes, refused shapes, shardings by logical rules, placement and batches over 'data'."""

import json
import os
import subprocess
import sys
import textwrap

import flax
from flax.linen import partitioning as nn_partitioning
import jax
from jax.sharding import PartitionSpec
import numpy as np
import pytest

from mpt_jax.backbone import params as backbone_params
from mpt_jax.prompts import modules as prompts
from mpt_jax.runtime.partitioning import axis_rules
from mpt_jax.runtime.partitioning import Partitioner
from tests import helpers


def _specs(shardings):
  return flax.traverse_util.flatten_dict(jax.tree.map(lambda s: s.spec, shardings), sep="/")


def test_one_device_makes_a_one_by_one_mesh():
  partitioner = Partitioner()
  assert dict(partitioner.mesh.shape) == {"data": 1, "model": 1}
  assert partitioner.mesh.axis_names == ("data", "model")
  assert partitioner.data_parallelism == 1


def test_shapes_the_devices_cannot_make_are_refused():
  with pytest.raises(ValueError, match=r"num_partitions=2 does not divide the 1 devices\."):
    Partitioner(num_partitions=2)
  with pytest.raises(ValueError, match=r"mesh_shape \(1, 2\) needs 2 devices; there are 1\."):
    Partitioner(mesh_shape=(1, 2))


def test_backbone_shardings_follow_t5xs_rules(hf_t5_1_1):
  axes = backbone_params.abstract_variables(hf_t5_1_1.config)["params_axes"]
  specs = _specs(Partitioner().param_shardings(axes))
  model = PartitionSpec(None, "model")
  assert specs["encoder/layers_0/mlp/wi_0/kernel"] == model  # ('embed', 'mlp')
  assert specs["decoder/layers_1/mlp/wo/kernel"] == PartitionSpec("model", None)
  assert specs["encoder/layers_0/attention/query/kernel"] == model  # joined_kv
  assert specs["token_embedder/embedding"] == PartitionSpec("model", None)  # vocab
  assert specs["decoder/logits_dense/kernel"] == model
  assert specs["encoder/relpos_bias/rel_embedding"] == PartitionSpec("model", None)
  assert specs["encoder/encoder_norm/scale"] == PartitionSpec(None)
  assert set(specs) == set(flax.traverse_util.flatten_dict(hf_t5_1_1.params, sep="/"))


def test_prompt_axes_are_replicated():
  ids = np.zeros(1, np.int32)
  module = prompts.DecomposedPrompt(3, 4, 8, rank=2)
  axes = module.init(jax.random.PRNGKey(0), ids)["params_axes"]
  specs = _specs(Partitioner().param_shardings(axes))
  assert specs == {prompts.SHARED: PartitionSpec(None, None),
                   prompts.TASK_COLS: PartitionSpec(None, None, None),
                   prompts.TASK_ROWS: PartitionSpec(None, None, None)}
  bank = prompts.PromptBank(3, 4, 8).init(jax.random.PRNGKey(0), ids)["params_axes"]
  assert _specs(Partitioner().param_shardings(bank)) == {
      "prompts": PartitionSpec(None, None, None)}


def test_two_d_rules_split_activations_embed_over_model_and_parameters_embed_over_data():
  specs = {dims: Partitioner(logical_axis_rules=axis_rules(*dims)).sharding
           for dims in [(1, 1), (2, 1), (1, 2), (2, 2)]}
  hidden, kernel, embedding = ("batch", "length", "embed"), ("embed", "mlp"), ("vocab", "embed")
  assert specs[1, 1](hidden).spec == PartitionSpec("data", None, None)
  assert specs[2, 1](hidden).spec == PartitionSpec("data", None, "model")
  assert specs[1, 2](hidden).spec == PartitionSpec("data", None, None)  # 'data' is taken
  assert specs[2, 2](hidden).spec == PartitionSpec("data", None, "model")
  for dims in [(1, 1), (2, 1)]:  # a kernel's embed never takes 'model' from mlp
    assert specs[dims](kernel).spec == PartitionSpec(None, "model")
    assert specs[dims](embedding).spec == PartitionSpec("model", None)
  for dims in [(1, 2), (2, 2)]:
    assert specs[dims](kernel).spec == PartitionSpec("data", "model")
    assert specs[dims](embedding).spec == PartitionSpec("model", "data")
  assert Partitioner().rules == axis_rules(1, 1)
  with pytest.raises(ValueError, match=r"activation_partitioning_dims=3: use 1 or 2\."):
    axis_rules(3, 1)


def test_other_logical_rules_give_other_shardings():
  partitioner = Partitioner(logical_axis_rules=(("embed", "data"), ("mlp", None)))
  assert partitioner.sharding(("embed", "mlp")).spec == PartitionSpec("data", None)
  assert partitioner.sharding(None).spec == PartitionSpec()


class _Mlp(flax.linen.Module):

  @flax.linen.compact
  def __call__(self, x):
    kernel = nn_partitioning.param_with_axes("kernel", jax.nn.initializers.normal(),
                                             (4, 6), axes=("embed", "mlp"))
    return x @ kernel


def test_place_gives_global_arrays_with_the_given_shardings():
  partitioner = Partitioner()
  variables = _Mlp().init(jax.random.PRNGKey(0), np.ones((1, 4), np.float32))
  host = jax.tree.map(np.asarray, flax.core.unfreeze(variables["params"]))
  shardings = partitioner.param_shardings(variables["params_axes"])
  placed = partitioner.place(host, shardings)
  assert isinstance(placed["kernel"], jax.Array)
  assert placed["kernel"].sharding == shardings["kernel"]
  assert placed["kernel"].sharding.spec == PartitionSpec(None, "model")
  np.testing.assert_array_equal(np.asarray(placed["kernel"]), host["kernel"])


def test_global_batch_splits_the_rows_over_data():
  partitioner = Partitioner()
  batch = helpers.toy_batch({"encoder_input_tokens": np.arange(27).reshape(3, 9)})
  placed = partitioner.global_batch(batch)
  for name, value in placed.items():
    assert value.sharding == partitioner.batch_sharding, name
    assert value.sharding.spec == PartitionSpec("data")
    np.testing.assert_array_equal(np.asarray(value), batch[name])


EIGHT_DEVICES = textwrap.dedent("""
    import json
    import jax
    import numpy as np
    from mpt_jax.backbone import params as backbone_params
    import mpt_jax
    from mpt_jax.runtime.partitioning import axis_rules
    from mpt_jax.runtime.partitioning import Partitioner
    from tests import helpers

    facts = {"devices": jax.device_count()}
    facts["num_partitions_2"] = dict(Partitioner(num_partitions=2).mesh.shape)
    facts["data_parallelism_2"] = Partitioner(num_partitions=2).data_parallelism
    facts["mesh_shape_2x4"] = dict(Partitioner(mesh_shape=(2, 4)).mesh.shape)
    facts["two_devices"] = dict(Partitioner(devices=jax.devices()[:2]).mesh.shape)
    for name, kwargs in [("bad_partitions", dict(num_partitions=3)),
                         ("bad_shape", dict(mesh_shape=(3, 2)))]:
      try:
        Partitioner(**kwargs)
        facts[name] = None
      except ValueError as e:
        facts[name] = str(e)

    backbone = mpt_jax.load_backbone(helpers.FIXTURES / "hf_t5_1_1")
    partitioner = Partitioner(num_partitions=2)
    axes = backbone_params.abstract_variables(backbone.config)["params_axes"]
    placed = partitioner.place(backbone.params, partitioner.param_shardings(axes))
    kernel = placed["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"]
    facts["kernel_shape"] = list(kernel.shape)
    facts["kernel_shards"] = sorted({tuple(s.data.shape) for s in kernel.addressable_shards})
    host = backbone.params["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"]
    facts["kernel_shards_match"] = all(
        np.array_equal(np.asarray(s.data), host[s.index]) for s in kernel.addressable_shards)
    norm = placed["encoder"]["encoder_norm"]["scale"]
    facts["norm_shards"] = sorted({tuple(s.data.shape) for s in norm.addressable_shards})
    two_d = Partitioner(num_partitions=2, logical_axis_rules=axis_rules(2, 2))
    placed = two_d.place(backbone.params, two_d.param_shardings(axes))
    kernel = placed["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"]
    facts["two_d_kernel_shards"] = sorted({tuple(s.data.shape) for s in kernel.addressable_shards})
    facts["two_d_kernel_match"] = all(
        np.array_equal(np.asarray(s.data), host[s.index]) for s in kernel.addressable_shards)

    rows = np.arange(8 * 3, dtype=np.int32).reshape(8, 3)
    batch = partitioner.global_batch({"encoder_input_tokens": rows})["encoder_input_tokens"]
    facts["batch_equal"] = bool(np.array_equal(np.asarray(batch), rows))
    facts["batch_shards"] = sorted(
        (s.device.id, s.index[0].start, s.index[0].stop, list(s.data.shape))
        for s in batch.addressable_shards)
    print("FACTS" + json.dumps(facts))
""")


@pytest.mark.xdist_group("subprocesses")
def test_eight_devices_make_the_asked_meshes_and_shard_params_and_batches():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  done = subprocess.run([sys.executable, "-c", EIGHT_DEVICES], cwd=helpers.ROOT, env=env,
                        capture_output=True, text=True, timeout=300, check=False)
  assert done.returncode == 0, done.stderr[-4000:]
  line = next(l for l in done.stdout.splitlines() if l.startswith("FACTS"))
  facts = json.loads(line[len("FACTS"):])
  assert facts["devices"] == 8
  assert facts["num_partitions_2"] == {"data": 4, "model": 2}
  assert facts["data_parallelism_2"] == 4
  assert facts["mesh_shape_2x4"] == {"data": 2, "model": 4}
  assert facts["two_devices"] == {"data": 2, "model": 1}
  assert facts["bad_partitions"].startswith("num_partitions=3 does not divide the 8 devices.")
  assert facts["bad_shape"].startswith("mesh_shape (3, 2) needs 6 devices; there are 8.")
  # d_ff 48 of the fixture's 'mlp' kernels is split over the 2 'model' devices.
  assert facts["kernel_shape"] == [32, 48]
  assert facts["kernel_shards"] == [[32, 24]] and facts["kernel_shards_match"]
  assert facts["norm_shards"] == [[32]]
  # 2-D: the same kernel's embed (32) over the 4 'data' devices as well.
  assert facts["two_d_kernel_shards"] == [[8, 24]] and facts["two_d_kernel_match"]
  # 8 rows over 4 'data' groups: 2 rows each, the same rows on both 'model' devices.
  assert facts["batch_equal"]
  shards = facts["batch_shards"]
  assert len(shards) == 8 and all(shape == [2, 3] for *_, shape in shards)
  starts = sorted(start for _, start, _, _ in shards)
  assert starts == [0, 0, 2, 2, 4, 4, 6, 6]
