"""benchmarks/accelerator.py works before a device is lent: its --smoke run on the CPU
prints every row with finite positive figures, and a spent budget still leaves a table."""

import json
import math
import os
import subprocess
import sys

import pytest

from benchmarks import accelerator
from tests import helpers


def _figures(line: str) -> list[str]:
  return [cell.strip() for cell in line.strip().strip("|").split("|")]


@pytest.mark.xdist_group("subprocesses")
def test_smoke_run_prints_every_row(tmp_path):
  output = tmp_path / "accelerator.json"
  # Unoptimised CPU code compiles in two thirds of the time; only the figures are slower.
  flags = os.environ.get("XLA_FLAGS", "") + (" --xla_backend_optimization_level=0"
                                             " --xla_llvm_disable_expensive_passes=true")
  run = subprocess.run(
      [sys.executable, "benchmarks/accelerator.py", "--smoke", f"--output={output}"],
      cwd=helpers.ROOT, capture_output=True, text=True, timeout=300,
      env={**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags})
  assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
  rows = [_figures(line) for line in run.stdout.splitlines()
          if line.startswith("| t5_1_1_tiny |")]
  assert [row[1] for row in rows] == list(accelerator.STAGES)
  for model, stage, batch, examples, tokens, ms, tflops, mfu, compile_s in rows:
    assert (model, batch, mfu) == ("t5_1_1_tiny", "2", "n/a")
    figures = [examples, ms, compile_s] + ([tokens] if stage.startswith("decode") else
                                           [tflops])
    assert all(math.isfinite(float(x)) and float(x) > 0 for x in figures), (stage, figures)
  saved = json.loads(output.read_text())
  assert saved["device_kind"] == "cpu" and saved["batch"] == 2
  assert [(r["stage"], r["error"]) for r in saved["rows"]] == [
      (stage, None) for stage in accelerator.STAGES]


def test_a_spent_budget_marks_the_rows_left(tmp_path, capsys):
  output = tmp_path / "out.json"
  report = accelerator.Report({"batch": 32}, [("xl", s) for s in accelerator.STAGES],
                              str(output))
  report.add(accelerator.Row("xl", "prompt tuning", 32, 100.0, None, 320.0, 5e13, 156.25,
                             0.158, 40.0))
  report.stop("--budget 440 s spent")
  printed = capsys.readouterr().out.splitlines()
  assert printed[0] == "| xl | prompt tuning | 32 | 100 | - | 320 | 156 | 15.8% | 40.0 |"
  assert printed[1:] == [
      "| xl | decode greedy | 32 | cut off: --budget 440 s spent |  |  |  |  |  |",
      "| xl | distillation | 32 | not run: --budget 440 s spent |  |  |  |  |  |"]
  assert [r["error"] for r in json.loads(output.read_text())["rows"]] == [
      None, "cut off: --budget 440 s spent", "not run: --budget 440 s spent"]


@pytest.mark.parametrize("kind, peak", [
    ("NVIDIA H200", 989e12), ("NVIDIA H100 80GB HBM3", 989e12),
    ("NVIDIA H100 PCIe", 756e12), ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA L4", 121e12),
    ("NVIDIA L40S", None), ("TPU v5 lite", 197e12), ("TPU v5", 459e12),
    ("TPU v6 lite", 918e12), ("cpu", None)])
def test_peak_flops_by_device_kind(kind, peak):
  assert accelerator.peak_flops(kind) == peak
