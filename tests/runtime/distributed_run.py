"""Runs toy trainings in a fresh process with a chosen device count and topology.

  python tests/runtime/distributed_run.py CONFIG_JSON

CONFIG_JSON: {"devices": 8, "backbone": ..., "runs": [{"model_dir": ..., "mesh_shape":
[2, 4] | null, "use_devices": 1 | null, "num_input_shards": 2, "train_steps": 6,
"model": {ModelConfig fields} (optional), "axis_rules": [activation dims, parameter
dims] (optional), "bank_seeds": [0, 1] (optional: a bank of those seeds, each run in
<model_dir>/seed<N>, evaluated every 3 steps)}],
"coordinator": "localhost:port" (optional), "process_count": 2, "process_index": 0,
"infer": {"output": ..., "prompts": ..., "split": "validation", "mesh_shape": [2, 4] |
null} (optional, after the runs)}.
Writes each run's final prompts to <model_dir>/prompts.safetensors and its losses
to <model_dir>/train.jsonl (process 0). A run stopped by SIGTERM prints
"preempted <process index> <step>" and exits with the preempted status.
"""

import json
import os
import sys

config = json.loads(sys.argv[1])
os.environ["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count={config['devices']}")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # pylint: disable=g-import-not-at-top

if "coordinator" in config:
  jax.distributed.initialize(config["coordinator"], config["process_count"],
                             config["process_index"])

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from mpt_jax import train as train_lib  # pylint: disable=g-import-not-at-top
from mpt_jax.runtime import preemption  # pylint: disable=g-import-not-at-top
from mpt_jax.runtime.partitioning import axis_rules  # pylint: disable=g-import-not-at-top
from mpt_jax.runtime.partitioning import Partitioner  # pylint: disable=g-import-not-at-top
from tests import helpers  # pylint: disable=g-import-not-at-top

for run in config["runs"]:
  devices = jax.devices()[: run["use_devices"]] if run.get("use_devices") else None
  mesh_shape = tuple(run["mesh_shape"]) if run.get("mesh_shape") else None
  rules = axis_rules(*run["axis_rules"]) if run.get("axis_rules") else None
  partitioner = Partitioner(mesh_shape=mesh_shape, devices=devices, logical_axis_rules=rules)
  options = dict(partitioner=partitioner, train_steps=run.get("train_steps", 6),
                 checkpoint_period=100, num_input_shards=run.get("num_input_shards"),
                 dropout_rate=run.get("dropout_rate"), **run.get("model", {}))
  try:
    if "bank_seeds" in run:
      train_lib.train_bank([
          helpers.toy_spec(os.path.join(run["model_dir"], f"seed{seed}"), config["backbone"],
                           seed=seed, eval_period=3, **options)
          for seed in run["bank_seeds"]])
    else:
      helpers.train_toy(run["model_dir"], config["backbone"], **options)
  except preemption.Preempted as e:
    print("preempted", jax.process_index(), e.step, flush=True)
    sys.exit(preemption.PREEMPTED_EXIT_CODE)
if "infer" in config:
  from mpt_jax import infer as infer_lib  # pylint: disable=g-import-not-at-top
  spec = config["infer"]
  mesh_shape = tuple(spec["mesh_shape"]) if spec.get("mesh_shape") else None
  infer_lib.infer(spec["output"], prompts=spec["prompts"], backbone=config["backbone"],
                  task_feature_lengths=helpers.TOY_LENGTHS, split=spec.get("split",
                                                                           "validation"),
                  batch_size=8, partitioner=Partitioner(mesh_shape=mesh_shape))
print("done", jax.process_index(), jax.device_count())
