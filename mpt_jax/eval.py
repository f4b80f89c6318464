r"""Evaluates saved prompts on tasks' validation and test splits, without training.

  python -m mpt_jax.eval --gin_file=runs/eval.gin \
    --gin.PROMPTS="'/tmp/mpt/adapt/best/prompts.safetensors'" \
    --gin.MODEL_DIR="'/tmp/mpt/adapt/eval'"

PROMPTS is a prompt file, a PEFT adapter directory, or a run's MODEL_DIR (its best
prompt if it kept one, else its final prompt). Results go to MODEL_DIR/results.json.
"""

from absl import flags

from mpt_jax import cli
from mpt_jax import evaluate_prompts

flags.adopt_module_key_flags(cli)


def main(argv):
  cli.start(argv)
  evaluate_prompts.evaluate()


if __name__ == "__main__":
  cli.run(main)
