"""`make aot`: every MPT stage of T5 1.1 Base, XL and XXL compiled for TPU v5e-8, v5e-16
and v4-8 (and Base for one v5e chip) on this CPU (`python -m mpt_jax.aot`, libtpu's
compiler), with the settings of `gin/models/t5_1_1_*.gin` and the stage files, at the
paper's batch (32) and lengths (inputs 256 + a 100-vector prompt, targets 32). Prints one
Markdown table.

`python benchmarks/aot_table.py t5_1_1_xxl` makes the rows of the models named only.
Each (model, stage) runs in its own process (two where the targets' meshes differ). A gin
file's NUM_PARTITIONS larger than a topology's device count (8 on v4-8's 4 megacore chips)
is lowered to the device count, as a user of that slice would. The adaptation stage
adapts one target (RTE).
"""

import json
import os
import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from mpt_jax import aot  # pylint: disable=g-import-not-at-top

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ("t5_1_1_base", "t5_1_1_xl", "t5_1_1_xxl")
STAGES = {"teachers": [], "distill": [],
          "adapt": ["--gin.TARGET_MIXTURE='mpt_glue_rte'"]}
TOPOLOGIES = {"v5e-8": 8, "v5e-16": 16, "v4-8": 4}  # devices
# Base must also fit on one v5e chip.
EXTRA_TOPOLOGIES = {"t5_1_1_base": {"v5e-1": 1}}


def _num_partitions(model: str) -> int:
  text = (ROOT / "gin/models" / f"{model}.gin").read_text()
  line = next(l for l in text.splitlines() if l.startswith("NUM_PARTITIONS"))
  return int(line.split("=")[1])


def compile_rows(model: str, stage: str) -> list[dict]:
  """One process per (model, stage, NUM_PARTITIONS): its targets' JSON reports."""
  targets = {**TOPOLOGIES, **EXTRA_TOPOLOGIES.get(model, {})}
  by_partitions = {}
  for topology, devices in targets.items():
    by_partitions.setdefault(min(_num_partitions(model), devices), []).append(topology)
  reports = {}
  for partitions, topologies in by_partitions.items():
    command = [sys.executable, "-m", "mpt_jax.aot", f"--gin_file=runs/{stage}.gin",
               f"--gin_file=models/{model}.gin", "--json",
               *[f"--topology={t}" for t in topologies],
               f"--gin.NUM_PARTITIONS={partitions}", *STAGES[stage]]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    for line in done.stdout.splitlines():
      if line.startswith("{"):
        reports[json.loads(line)["target"]] = json.loads(line)
    error = (done.stderr.strip().splitlines() or ["no output"])[-1]
    for topology in topologies:
      reports.setdefault(topology, {"target": topology, "error": error})
    print(f"  {model} {stage} {topologies}: done", file=sys.stderr, flush=True)
  return [reports[t] for t in targets]


def main():
  header, rule = aot.TABLE_HEADER.splitlines()
  print("| model | stage " + header)
  print("|---|---" + rule)
  for model in sys.argv[1:] or MODELS:
    for stage in STAGES:
      for r in compile_rows(model, stage):
        row = (f"| {r['target']} | failed: {r['error']} |" if "error" in r else
               aot.format_row(aot.Report.from_json(r)))
        print(f"| {model} | {stage} {row}", flush=True)


if __name__ == "__main__":
  main()
