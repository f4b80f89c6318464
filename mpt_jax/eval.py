r"""Evaluates saved prompts on tasks' validation and test splits, without training.

  python -m mpt_jax.eval --gin_file=runs/eval.gin \
    --gin.PROMPTS="'/tmp/mpt/adapt/best/prompts.safetensors'" \
    --gin.MODEL_DIR="'/tmp/mpt/adapt/eval'"

PROMPTS is a prompt file, a PEFT adapter directory, or a run's MODEL_DIR (its best
prompt if it kept one, else its final prompt). Results go to MODEL_DIR/results.json.
"""

from absl import app
from absl import flags

from mpt_jax import cli
from mpt_jax import evaluate_prompts

flags.adopt_module_key_flags(cli)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments {argv[1:]}; use --gin_bindings.")
  cli.configure_logging()
  cli.initialize_distributed()
  cli.parse_gin()
  evaluate_prompts.evaluate()


if __name__ == "__main__":
  app.run(main, argv=cli.main_argv())
