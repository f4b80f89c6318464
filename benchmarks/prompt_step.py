"""The JAX side of `make bench`: prompt-tuning and distillation steps on a
T5-small-shaped random backbone, on this CPU. Prints one JSON line.

Shapes (the issue's): d_model 512, 6+6 layers, 8 heads, d_ff 2048, vocab 32128,
batch 8, inputs 256 + a 100-vector prompt, targets 8, float32.
"""

import json
import pathlib
import resource
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from benchmarks import common  # pylint: disable=g-import-not-at-top
from mpt_jax.model import models  # pylint: disable=g-import-not-at-top
from mpt_jax.prompts import modules as prompts  # pylint: disable=g-import-not-at-top
from mpt_jax.runtime import checkpoints  # pylint: disable=g-import-not-at-top
from mpt_jax.runtime import steps  # pylint: disable=g-import-not-at-top
from mpt_jax.runtime import optimizers  # pylint: disable=g-import-not-at-top

NUM_SOURCE_TASKS = 6


def _state(prompt_module, optimizer):
  trainable = {"prompt": prompt_module.init(jax.random.PRNGKey(0),
                                            jnp.zeros((1,), jnp.int32))["params"]}
  return steps.initial_train_state(trainable, optimizer, seed=0)


def _checkpoint_bytes(state) -> int:
  with tempfile.TemporaryDirectory() as directory:
    saver = checkpoints.RunCheckpoints(directory, keep=1)
    saver.save(1, serialization.to_state_dict(jax.device_get(state)), {}, {})
    saver.close()
    return sum(f.stat().st_size for f in pathlib.Path(directory).rglob("*") if f.is_file())


def main():
  config = common.small_config()
  params = common.random_params(config)
  optimizer = optimizers.make_optimizer()
  batch = {k: jnp.asarray(v) for k, v in common.batch(NUM_SOURCE_TASKS).items()}
  length, width = common.PROMPT_LENGTH, config.d_model

  single = prompts.SinglePrompt(length, width)
  pt_model = models.PromptTuningModel(config, single)
  pt_state = _state(single, optimizer)
  student = prompts.DecomposedPrompt(NUM_SOURCE_TASKS, length, width)
  teacher = prompts.PromptBank(NUM_SOURCE_TASKS, length, width)
  distill_model = models.DistillationModel(config, student, teacher)
  distill_state = _state(student, optimizer)
  frozen = {**params, "teacher_prompt": teacher.init(
      jax.random.PRNGKey(1), jnp.zeros((1,), jnp.int32))["params"]}
  student_model = models.PromptTuningModel(config, student)

  def forward(model):
    return jax.jit(lambda t, f, b: model.loss_fn(models.merge(t, f), b)[0])

  def step(model):
    jitted = jax.jit(steps.make_train_step(model, optimizer, use_dropout=False))
    return jitted, lambda s, f, b: jitted(s, f, b)[1]["loss"]

  pt_forward, student_forward = forward(pt_model), forward(student_model)
  pt_step, pt_call = step(pt_model)
  distill_step, distill_call = step(distill_model)
  square = jnp.asarray(np.random.default_rng(0).normal(size=(2048, 2048)), jnp.float32)
  matmul = jax.jit(lambda x, y: x @ y)
  seconds = common.interleaved_seconds({
      "matmul_2048": (matmul, (square, square)),
      "pt_forward": (pt_forward, (pt_state.params, params, batch)),
      "pt_step": (pt_call, (pt_state, params, batch)),
      "student_forward": (student_forward, (distill_state.params, frozen, batch)),
      "distill_step": (distill_call, (distill_state, frozen, batch)),
  })
  result = {
      "seconds": seconds,
      "matmul_flops_per_second": 2 * 2048 ** 3 / seconds["matmul_2048"],
      "pt_step_flops": common.flops_of(pt_step, pt_state, params, batch),
      "pt_forward_flops": common.flops_of(pt_forward, pt_state.params, params, batch),
      "checkpoint_bytes": _checkpoint_bytes(pt_state),
      "backbone_bytes": sum(int(np.prod(x.shape)) * 4 for x in jax.tree.leaves(params)),
      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      "versions": {"jax": jax.__version__},
  }
  print(json.dumps(result))


if __name__ == "__main__":
  main()
