r"""Pretrains the demo's tiny backbone (stage 0); see mpt_jax/pretraining.py.

  python -m mpt_jax.pretrain --gin_file=pipelines/demo_pretrain.gin \
    --gin.MODEL_DIR="'runs/cache/demo_backbone'"
"""

from absl import app
from absl import flags

from mpt_jax import cli
from mpt_jax import pretraining

flags.adopt_module_key_flags(cli)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments {argv[1:]}; use --gin_bindings.")
  cli.configure_logging()
  cli.parse_gin()
  pretraining.pretrain()


if __name__ == "__main__":
  app.run(main, argv=cli.main_argv())
