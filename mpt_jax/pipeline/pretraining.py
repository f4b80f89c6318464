r"""Stage 0 of the offline demo: pretrain a tiny T5 from scratch on a mixture.

  python -m mpt_jax.pipeline.pretraining --gin_file=pipelines/demo_pretrain.gin \
    --gin.MODEL_DIR="'output/cache/demo_backbone_spm'"

No pretrained weights can be downloaded on the demo's machines, and prompt tuning
needs a backbone that already knows its language, so the demo first trains every
parameter of a small T5 on the synthetic suite's text and source tasks. The result
is a HuggingFace T5 directory; a finished one is reused (it is the cache), an
unfinished one redone. The pipeline runs this as its own process.
"""

import logging
import time
from typing import Mapping, Optional

from absl import flags
from etils import epath
import gin
import jax
import numpy as np
import optax

from mpt_jax import cli
from mpt_jax import paths
from mpt_jax.backbone import huggingface
from mpt_jax.backbone.config import named_config
from mpt_jax.backbone.loading import Backbone
from mpt_jax.backbone.loading import random_backbone
from mpt_jax.backbone.t5 import T5
from mpt_jax.model import losses
from mpt_jax.runtime import data_checks
from mpt_jax.runtime import inputs
from tasks import registry

flags.adopt_module_key_flags(cli)  # --help lists the shared flags


def is_pretrained(directory) -> bool:
  return (paths.as_path(directory) / huggingface.WEIGHTS_FILE).is_file()


@gin.configurable
def pretrain(model_dir: str = gin.REQUIRED, *, config_name: str = "t5_1_1_tiny",
             config_overrides: Optional[Mapping] = None,
             mixture_or_task_name: str = "synth_pretrain",
             task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
             batch_size: int = 64, train_steps: int = 2000, learning_rate: float = 0.01,
             warmup_steps: int = 100, seed: int = 0, log_period: int = 100) -> epath.Path:
  """Trains all parameters with Adafactor (T5's pretraining optimiser) and saves a
  HuggingFace T5 directory in `model_dir`."""
  model_dir = paths.as_path(model_dir)
  if train_steps <= warmup_steps:
    raise ValueError(f"pretrain.train_steps ({train_steps}) must exceed "
                     f"pretrain.warmup_steps ({warmup_steps}); raise one or lower the other.")
  if is_pretrained(model_dir):
    logging.info("Using the pretrained backbone in %s", model_dir)
    return model_dir
  config = named_config(config_name, **dict(config_overrides or {}))
  params = random_backbone(config, seed).params
  schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup_steps,
                                                train_steps, learning_rate * 0.1)
  optimizer = optax.adafactor(schedule)
  opt_state = optimizer.init(params)
  module = T5(config)

  def loss_fn(p, batch, rng):
    logits = module.apply({"params": p}, batch["encoder_input_tokens"],
                          batch["decoder_input_tokens"], enable_dropout=True,
                          rngs={"dropout": rng})
    return losses.cross_entropy(logits, batch["decoder_target_tokens"],
                                batch["decoder_loss_weights"], z_loss=1e-4)[0]

  @jax.jit
  def step(p, state, batch, rng):
    loss, grads = jax.value_and_grad(loss_fn)(p, batch, rng)
    updates, state = optimizer.update(grads, state, p)
    return optax.apply_updates(p, updates), state, loss

  task_names = registry.task_names(mixture_or_task_name)
  data_checks.check_tasks(task_names, "train", task_feature_lengths, batch_size)
  rates = inputs.mixing_rates(task_names, mixture_or_task_name, None, "train")
  batches = inputs.MixedBatches(task_names, rates, task_feature_lengths, batch_size,
                                seed=seed)
  key, start, recent = jax.random.PRNGKey(seed), time.time(), []
  for i in range(1, train_steps + 1):
    params, opt_state, loss = step(params, opt_state, next(batches),
                                   jax.random.fold_in(key, i))
    recent.append(loss)
    if i % log_period == 0 or i == train_steps:
      elapsed = time.time() - start
      logging.info("pretrain step %d/%d  loss %.4f  %.1f steps/s  ETA %.0fs", i, train_steps,
                   float(np.mean(jax.device_get(recent))), i / elapsed,
                   (train_steps - i) * elapsed / i)
      recent = []
  backbone = Backbone(config, jax.tree.map(np.asarray, params))
  tmp = model_dir.with_name(model_dir.name + ".tmp")
  backbone.save(tmp)
  tmp.rename(model_dir)
  return model_dir


def main(argv):
  cli.start(argv, distributed=False)
  pretrain()


if __name__ == "__main__":
  cli.run(main)
