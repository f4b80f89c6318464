r"""Pretrains the demo's tiny backbone (stage 0); see mpt_jax/pretraining.py.

  python -m mpt_jax.pretrain --gin_file=pipelines/demo_pretrain.gin \
    --gin.MODEL_DIR="'runs/cache/demo_backbone_spm'"
"""

from absl import flags

from mpt_jax import cli
from mpt_jax import pretraining

flags.adopt_module_key_flags(cli)


def main(argv):
  cli.start(argv, distributed=False)
  pretraining.pretrain()


if __name__ == "__main__":
  cli.run(main)
