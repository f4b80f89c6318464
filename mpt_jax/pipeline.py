r"""Runs the whole MPT pipeline from a gin file; see mpt_jax/orchestration.py.

  python -m mpt_jax.pipeline --gin_file=pipelines/demo.gin --gin.ROOT_DIR="'runs/demo'"

Rerunning the same command skips finished stages and resumes an interrupted one.
"""

from absl import flags

from mpt_jax import cli
from mpt_jax import orchestration

flags.adopt_module_key_flags(cli)


def main(argv):
  cli.start(argv, distributed=False)
  results = orchestration.run_pipeline() / "results.md"
  if results.exists():  # written by process 0 of a multi-host pipeline
    print(results.read_text())


if __name__ == "__main__":
  cli.run(main)
