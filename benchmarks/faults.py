r"""`make faults`: a kill/corrupt/resume soak on a tiny model. Each run of the toy stage
(tests/toy.gin: 200 steps, a checkpoint every 10) is hit by random faults until it
finishes, then compared with the same run uninterrupted:

  SIGKILL at a random step; SIGTERM at a random step (save, exit 75);
  SIGKILL, then one of the four checkpoint corruptions of tests/faults.py
  (truncate, flip bytes, garble the data position, drop the commit marker).

  python benchmarks/faults.py [--runs 5] [--faults_per_run 4] [--seed 0]

Prints one line per fault and a summary: how many runs ended bitwise equal to the
uninterrupted one (target: all).
"""

import argparse
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import mpt_jax  # pylint: disable=g-import-not-at-top,wrong-import-position
from tests import faults  # pylint: disable=g-import-not-at-top,wrong-import-position
from tests import helpers  # pylint: disable=g-import-not-at-top,wrong-import-position

TRAIN_STEPS = 200
KINDS = ("sigkill", "sigterm", *faults.CORRUPTIONS)


def _run_until(model_dir, backbone, step: int) -> tuple[subprocess.Popen, bool]:
  """Starts (or resumes) the run; returns it once it logged `step`, and whether it did."""
  process = subprocess.Popen(helpers.toy_train_command(model_dir, backbone), cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 600
  while (process.poll() is None and helpers.last_logged_step(model_dir) < step and
         time.time() < deadline):
    time.sleep(0.01)
  return process, process.poll() is None


def _latest_checkpoint(model_dir):
  steps = [p for p in (pathlib.Path(model_dir) / "checkpoints").glob("checkpoint_*")
           if p.name.split("_")[1].isdigit()]
  return max(steps, key=lambda p: int(p.name.split("_")[1]), default=None)


def _inject(kind: str, model_dir, backbone, rng: random.Random) -> str:
  """Runs the toy stage to a random step and applies `kind`; returns what happened."""
  target = helpers.last_logged_step(model_dir) + rng.randint(5, 40)
  process, running = _run_until(model_dir, backbone, target)
  if not running:
    return f"{kind:22s} not applied: the run finished first (exit {process.returncode})"
  at = helpers.last_logged_step(model_dir)
  process.send_signal(signal.SIGTERM if kind == "sigterm" else signal.SIGKILL)
  status = process.wait()
  what = f"{kind:22s} at step {at:3d}: exit {status}"
  if kind in faults.CORRUPTIONS:
    latest = _latest_checkpoint(model_dir)
    if latest is None:
      return what + ", no checkpoint yet to damage"
    faults.corrupt(latest, kind, seed=rng.randrange(1 << 30))
    what += f", damaged {latest.name}"
  return what


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--runs", type=int, default=5)
  parser.add_argument("--faults_per_run", type=int, default=4)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  rng = random.Random(args.seed)
  started = time.time()
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    backbone = helpers.write_tiny_backbone(tmp / "backbone")
    subprocess.run(helpers.toy_train_command(tmp / "uninterrupted", backbone), cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reference = mpt_jax.load_prompts(tmp / "uninterrupted" / "prompts.safetensors").merged()
    equal, injected = 0, 0
    for run in range(args.runs):
      model_dir = tmp / f"run_{run}"
      for _ in range(args.faults_per_run):
        line = _inject(rng.choice(KINDS), model_dir, backbone, rng)
        injected += "not applied" not in line
        print(f"run {run}: {line}", flush=True)
      finished = subprocess.run(helpers.toy_train_command(model_dir, backbone), cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
      if finished.returncode != 0:
        print(f"run {run}: the final rerun failed:\n{finished.stderr[-2000:]}")
        continue
      final = mpt_jax.load_prompts(model_dir / "prompts.safetensors").merged()
      same = np.array_equal(final, reference)
      equal += same
      print(f"run {run}: finished; final prompt {'bitwise equal to' if same else 'DIFFERS from'}"
            " the uninterrupted run", flush=True)
  print(f"\n{injected} faults injected over {args.runs} runs; {equal}/{args.runs} runs ended "
        f"bitwise equal to the uninterrupted run (target: all). "
        f"{(time.time() - started) / 60:.1f} min.")
  sys.exit(0 if equal == args.runs else 1)


if __name__ == "__main__":
  main()
