"""`make bench`: runs the JAX benchmarks (training steps, decoding, the input pipeline, the
train loop's overhead, run banks against separate processes) and, where the `reference`
extra is installed, their PyTorch/PEFT counterparts, then prints one table of ratios
measured in this run.

The PEFT side runs with $REFERENCE_PYTHON, else .venv-reference/bin/python (made by
`make fixtures`); without either it is reported as skipped.
"""

import json
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent


def _run(python, script) -> dict:
  out = subprocess.run([python, str(HERE / script)], cwd=ROOT, capture_output=True,
                       text=True, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
  return json.loads(out.stdout.strip().splitlines()[-1])


def _reference_python():
  candidates = [os.environ.get("REFERENCE_PYTHON"), ROOT / ".venv-reference/bin/python"]
  for candidate in candidates:
    if candidate and pathlib.Path(candidate).is_file():
      return str(candidate)
  return None


DECODERS = {"greedy": "greedy", "beam4": "beam-4"}


def rows(jax_result: dict, peft_result, decode_result: dict, peft_decode_result,
         input_result: dict, loop_result: dict,
         bank_result: dict) -> list[tuple[str, str, str]]:
  s = jax_result["seconds"]
  peak = jax_result["matmul_flops_per_second"]
  achieved = jax_result["pt_step_flops"] / s["pt_step"]
  table = [
      ("prompt-tuning step / forward", f"{s['pt_step'] / s['pt_forward']:.2f}", "<= 2.1"),
      ("distillation step / student forward",
       f"{s['distill_step'] / s['student_forward']:.2f}", "<= 3.2"),
      ("step FLOP/s / measured f32 matmul FLOP/s", f"{achieved / peak:.2f}", ">= 0.6"),
  ]
  if peft_result:
    table.append(("our step / PyTorch+PEFT step",
                  f"{s['pt_step'] / peft_result['step']:.2f}", "<= 0.6"))
    bound = jax_result["pt_step_flops"] / peak / peft_result["step"]
    table.append(("  (lower bound: step FLOPs at the matmul peak / PEFT step)",
                  f"{bound:.2f}", ""))
  else:
    table.append(("our step / PyTorch+PEFT step", "skipped (no reference extra)", "<= 0.6"))
  ours = decode_result["tokens_per_second"]
  theirs = peft_decode_result["tokens_per_second"] if peft_decode_result else None
  for key, name in DECODERS.items():
    ratio = f"{ours[key] / theirs[key]:.2f}" if theirs else "skipped (no reference extra)"
    table.append((f"decode tokens/s, {name}: ours / HF generate+PEFT", ratio, ">= 2"))
    if theirs:  # what a decoder costing nothing beyond the encoder would reach
      hf_call_seconds = decode_result["tokens_per_call"] / theirs[key]
      bound = hf_call_seconds / (decode_result["encoder_flops"] / peak)
      table.append((f"  (upper bound: HF {name} time / our encoder's FLOPs at the matmul "
                    "peak)", f"{bound:.2f}", ""))
  for batch, speedup in input_result["speedup"].items():
    table.append((f"input pipeline examples/s, batch {batch} (inputs 512, targets 128): "
                  "ours / row-by-row assembly",
                  f"{speedup:.2f} ({input_result['examples_per_second'][batch]:,} / "
                  f"{input_result['baseline_examples_per_second'][batch]:,})", ">= 5"))
  table.append(("train loop step / bare jitted step", f"{loop_result['overhead']:.3f}",
                "<= 1.03"))
  table.append((f"run bank: {bank_result['runs']} few-shot runs at the demo's shapes, "
                "separate processes / one bank (wall time)",
                f"{bank_result['speedup']:.2f} ({bank_result['separate_seconds']:.0f} s / "
                f"{bank_result['bank_seconds']:.0f} s)", ">= 4"))
  table += [
      ("peak resident memory of the step process", f"{jax_result['peak_rss_mb']:.0f} MB", ""),
      ("checkpoint size on disk (prompt + optimizer state)",
       f"{jax_result['checkpoint_bytes'] / 1024:.0f} KB "
       f"(backbone {jax_result['backbone_bytes'] / 2**20:.0f} MB, not saved)", ""),
  ]
  return table


def main():
  jax_result = _run(sys.executable, "prompt_step.py")
  reference = _reference_python()
  peft_result = _run(reference, "peft_step.py") if reference else None
  decode_result = _run(sys.executable, "decode.py")
  peft_decode_result = _run(reference, "peft_decode.py") if reference else None
  input_result = _run(sys.executable, "input_pipeline.py")
  loop_result = _run(sys.executable, "loop_overhead.py")
  bank_result = _run(sys.executable, "run_bank.py")
  s = jax_result["seconds"]
  print("T5-small shape, batch 8, inputs 256 + prompt 100, targets 8, float32, this CPU")
  print(f"times (s): forward {s['pt_forward']:.3f}, step {s['pt_step']:.3f}, student "
        f"forward {s['student_forward']:.3f}, distillation step {s['distill_step']:.3f}, "
        f"matmul peak {jax_result['matmul_flops_per_second'] / 1e9:.0f} GFLOP/s"
        + (f"; PEFT step {peft_result['step']:.3f}, forward {peft_result['forward']:.3f}"
           if peft_result else ""))
  ours = decode_result["tokens_per_second"]
  hf = peft_decode_result["tokens_per_second"] if peft_decode_result else None
  print("decode tokens/s (32 new tokens): " + ", ".join(
      f"{name} {ours[key]:.0f}" + (f", HF {name} {hf[key]:.0f}" if hf else "")
      for key, name in DECODERS.items()))
  print()
  print("| measure | value | target |")
  print("|---|---|---|")
  for name, value, target in rows(jax_result, peft_result, decode_result, peft_decode_result,
                                  input_result, loop_result, bank_result):
    print(f"| {name} | {value} | {target} |")


if __name__ == "__main__":
  main()
