r"""`make demo`: the MPT pipeline on the embedded synthetic suite, offline, on CPU.

  python -m mpt_jax.demo [--root_dir=runs/demo]

Runs gin/pipelines/demo.gin (stage 0 pretraining is cached in runs/cache) and prints
the results table; rerunning skips what is finished and resumes what is not.
"""

import time

from absl import flags

from mpt_jax import cli
from mpt_jax import orchestration

flags.DEFINE_string("root_dir", "runs/demo", "Where the demo's runs and results go.")


def main(argv):
  del argv
  cli.configure_logging()
  cli.FLAGS.gin_file = cli.FLAGS.gin_file or ["pipelines/demo.gin"]
  cli.FLAGS.gin_bindings = [*cli.FLAGS.gin_bindings, f"ROOT_DIR = '{flags.FLAGS.root_dir}'"]
  cli.parse_gin()
  start = time.time()
  root = orchestration.run_pipeline()
  print((root / "results.md").read_text())
  print(f"Demo finished in {(time.time() - start) / 60:.1f} minutes; results, curves.png "
        f"and every run are in {root}.")


if __name__ == "__main__":
  cli.run(main)
