r"""Trains a prompt (an MPT stage) from gin files, like t5x.train.

  python -m mpt_jax.train \
    --gin_file=runs/teachers.gin --gin_file=smoke/synthetic.gin \
    --gin.MODEL_DIR="'/tmp/mpt/teachers'"

Rerunning the same command resumes from the latest complete checkpoint in MODEL_DIR.
Any `train(...)` argument can be bound, e.g. `--gin.train.train_steps=100`.
"""

from absl import flags

from mpt_jax import cli
from mpt_jax import trainer

flags.adopt_module_key_flags(cli)


def main(argv):
  cli.start(argv)
  trainer.train()


if __name__ == "__main__":
  cli.run(main)
