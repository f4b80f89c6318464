"""Run banks against separate processes: R few-shot adaptation runs at the demo's shapes
(its tiny T5 1.1, the synthetic targets, k = 16, gin/pipelines/demo.gin's few-shot
settings: 60 steps of batch 8, 50 dev examples a task evaluated every 10 steps), trained
as one `python -m mpt_jax.train` job and as R jobs one after another, as the pipeline
launched them before banks. Prints one JSON line: both wall times, the ratio (target
>= 4) and how far apart the two ways' final prompts are.

  python benchmarks/run_bank.py [--runs=10] [--steps=60]

The backbone is random (timings do not depend on the weights); each run is vanilla
prompt tuning of one seed and few-shot draw, as its own `mpt_jax.train` would run it.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # the demo's shapes, on this machine's CPU

import numpy as np  # pylint: disable=g-import-not-at-top

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
import mpt_jax  # pylint: disable=g-import-not-at-top

ROOT = pathlib.Path(__file__).resolve().parent.parent
# gin/pipelines/demo_pretrain.gin's backbone.
DEMO_SHAPE = dict(vocab_size=1024, d_model=128, d_kv=32, num_heads=4, d_ff=256,
                  num_layers=3, num_decoder_layers=3, dropout_rate=0.0)
TARGETS = ["synth_spm_mrqa", "synth_spm_reviews", "synth_spm_rte"]


def run_files_and_bindings(backbone: str, model_dir: pathlib.Path, seed: int, draw: int,
                           steps: int) -> tuple[list[str], list[str]]:
  """One few-shot PT run of the demo, as the pipeline gives it to `mpt_jax.train`."""
  files = ["runs/prompt_tuning.gin", "runs/few_shot.gin", "smoke/synthetic_spm.gin"]
  bindings = [f"BACKBONE={backbone!r}", f"MODEL_DIR={str(model_dir)!r}",
              "TARGET_MIXTURE='synth_spm_target'", f"TARGET_TASKS={TARGETS!r}",
              f"SEED={seed}", "FEW_SHOT_K=16", f"FEW_SHOT_SEED={draw}",
              f"TRAIN_STEPS={steps}", "EVAL_PERIOD=10", "BATCH_SIZE=8",
              "EvalConfig.num_examples=50", "EvalConfig.batch_size=50",
              "CheckpointConfig.period=50",
              "TASK_MODULES=['tasks.synthetic.spm']"]
  return files, bindings


def _train(arguments: list[str]) -> float:
  started = time.perf_counter()
  subprocess.run([sys.executable, "-m", "mpt_jax.train", *arguments], cwd=ROOT, check=True,
                 capture_output=True, text=True,
                 env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
  return time.perf_counter() - started


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--runs", type=int, default=10)
  parser.add_argument("--steps", type=int, default=60)
  args = parser.parse_args()
  settings = [(seed, draw) for seed in range(2) for draw in range(args.runs // 2 + 1)]
  settings = settings[:args.runs]
  with tempfile.TemporaryDirectory() as work:
    work = pathlib.Path(work)
    config = mpt_jax.named_config("t5_1_1_tiny", **DEMO_SHAPE)
    backbone = str(mpt_jax.random_backbone(config, seed=0).save(work / "backbone"))

    runs = []
    for seed, draw in settings:
      files, bindings = run_files_and_bindings(backbone, work / "bank" / f"s{seed}_d{draw}",
                                               seed, draw, args.steps)
      runs.append({"name": f"s{seed}_d{draw}", "gin_files": files, "bindings": bindings})
    (work / "bank.gin").write_text(
        f"MODEL_DIR = {str(work / 'bank')!r}\nTASK_MODULES = ['tasks.synthetic.spm']\n"
        f"sweep.model_dir = %MODEL_DIR\nsweep.runs = {runs!r}\n")
    bank_seconds = _train([f"--gin_file={work / 'bank.gin'}"])

    separate_seconds = 0.0
    for seed, draw in settings:
      files, bindings = run_files_and_bindings(backbone, work / "alone" / f"s{seed}_d{draw}",
                                               seed, draw, args.steps)
      separate_seconds += _train([*(f"--gin_file={f}" for f in files),
                                  *(f"--gin_bindings={b}" for b in bindings)])

    differences = [float(np.abs(
        mpt_jax.load_prompts(work / "bank" / name / "prompts.safetensors").merged() -
        mpt_jax.load_prompts(work / "alone" / name / "prompts.safetensors").merged()).max())
                   for name in (run["name"] for run in runs)]
  print(json.dumps({
      "runs": len(settings), "steps": args.steps, "bank_seconds": bank_seconds,
      "separate_seconds": separate_seconds, "speedup": separate_seconds / bank_seconds,
      "max_prompt_difference": max(differences),
      "shape": "demo backbone (d_model 128, 3+3 layers), batch 8 per run, inputs 32 + "
               "prompt 20, targets 8"}))


if __name__ == "__main__":
  main()
