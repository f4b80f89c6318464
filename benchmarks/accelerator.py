"""One command for a lent accelerator: how fast MPT's stages run on T5 1.1 Base and XL.

  pip install -e '.[cuda]' && python benchmarks/accelerator.py

Measures examples/s, achieved TFLOP/s and MFU of the prompt-tuning step (a decomposed
MPT prompt over 6 tasks) and of the distillation step (the same prompt taught by a
6-task teacher bank), and greedy decoding tokens/s, at the paper's shapes (batch 32,
inputs 256 + a 100-vector prompt, targets 32; flags change them), bf16 activations.
Backbones are random (nothing to download) and held in bf16, as
`ModelConfig.frozen_dtype = 'bfloat16'` holds them.

FLOPs are XLA's count for the compiled step (`cost_analysis`), so MFU is that count over
seconds per step over the device's dense bf16 peak; a decoding call is a while loop, whose
body XLA counts once, so decoding rows report no FLOP rate. A time is the fastest of
several calls after compilation.

A lent device's time is short and a failure must not waste it: rows print (and the
--output JSON is rewritten) as they finish, a row's error (out of memory, say) is printed
in its row, a row's timed calls stop after --row-seconds, and at --budget seconds a
watchdog marks the rows left as not run and ends the process, since an XLA compilation
cannot be interrupted. `--smoke` runs the same code on a tiny model on the CPU.
"""

import argparse
import dataclasses
import json
import os
import pathlib
import re
import sys
import threading
import time
from typing import Optional

import jax
import jax.numpy as jnp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from benchmarks import common  # pylint: disable=g-import-not-at-top
import mpt_jax  # pylint: disable=g-import-not-at-top
from mpt_jax.model import models  # pylint: disable=g-import-not-at-top
from mpt_jax.model.decoding import DecodingConfig  # pylint: disable=g-import-not-at-top
from mpt_jax.prompts import modules as prompts  # pylint: disable=g-import-not-at-top
from mpt_jax.runtime import steps  # pylint: disable=g-import-not-at-top
from mpt_jax.runtime import optimizers  # pylint: disable=g-import-not-at-top
from mpt_jax.runtime import setup as setup_lib  # pylint: disable=g-import-not-at-top
from mpt_jax.runtime.configs import ModelConfig  # pylint: disable=g-import-not-at-top

MODELS = ("t5_1_1_base", "t5_1_1_xl")
# Distillation last: the costliest row to compile, so a tight budget loses it first.
STAGES = ("prompt tuning", "decode greedy", "distillation")
# Dense (no sparsity) bf16 peak FLOP/s by `device_kind`; the first pattern that matches.
PEAK_BF16 = (
    (r"\bh100 pcie\b", 756e12),
    (r"\bh(100|200)\b", 989e12),
    (r"\ba100\b", 312e12),
    (r"\bl4\b", 121e12),
    (r"^tpu v5 ?lite$|^tpu v5e$", 197e12),
    (r"^tpu v4$", 275e12),
    (r"^tpu v5p?$", 459e12),
    (r"^tpu v6 ?lite$|^tpu v6e$", 918e12),
)
COLUMNS = ("model", "stage", "batch", "examples/s", "tokens/s", "step ms", "TFLOP/s",
           "MFU", "compile s")


@dataclasses.dataclass
class Row:
  model: str
  stage: str
  batch: int
  examples_per_second: Optional[float] = None
  tokens_per_second: Optional[float] = None
  step_ms: Optional[float] = None
  flops: Optional[float] = None
  tflops_per_second: Optional[float] = None
  mfu: Optional[float] = None
  compile_seconds: Optional[float] = None
  error: Optional[str] = None


def peak_flops(device_kind: str) -> Optional[float]:
  kind = device_kind.lower()
  return next((peak for pattern, peak in PEAK_BF16 if re.search(pattern, kind)), None)


def _number(x) -> str:
  if x is None:
    return "n/a"
  return f"{x:.0f}" if x >= 100 else f"{x:.3g}"


def markdown_row(row: Row) -> str:
  head = [row.model, row.stage, str(row.batch)]
  if row.error:
    message = row.error.replace("|", "/")
    return "| " + " | ".join(head + [message] + [""] * (len(COLUMNS) - 4)) + " |"
  mfu = "n/a" if row.mfu is None else f"{100 * row.mfu:.1f}%"
  tokens = "-" if row.tokens_per_second is None else _number(row.tokens_per_second)
  cells = [_number(row.examples_per_second), tokens, _number(row.step_ms),
           _number(row.tflops_per_second), mfu, f"{row.compile_seconds:.1f}"]
  return "| " + " | ".join(head + cells) + " |"


class Report:
  """Prints each row as it finishes and keeps the JSON file current, so that a run cut
  short still leaves everything it measured."""

  def __init__(self, header: dict, planned: list, output: Optional[str]):
    self.header, self.pending, self.output = header, list(planned), output
    self.rows = []
    self.lock = threading.Lock()

  def add(self, row: Row) -> None:
    with self.lock:
      self.pending.remove((row.model, row.stage))
      self.rows.append(row)
      print(markdown_row(row), flush=True)
      self._write()

  def stop(self, why: str) -> None:
    """Marks every row not yet finished as `why` (the first: cut off while running)."""
    with self.lock:
      for i, (model, stage) in enumerate(list(self.pending)):
        row = Row(model, stage, self.header["batch"],
                  error=f"{'cut off' if i == 0 else 'not run'}: {why}")
        self.rows.append(row)
        print(markdown_row(row), flush=True)
      self.pending.clear()
      self._write()

  def _write(self) -> None:
    if not self.output:
      return
    path = pathlib.Path(self.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(
        {**self.header, "rows": [dataclasses.asdict(r) for r in self.rows]}, indent=1))
    partial.replace(path)


def _backbone(name: str, seed: int = 0):
  """(config, params): a random backbone with bf16 activations, held in bf16 as
  `ModelConfig.frozen_dtype = 'bfloat16'` places it."""
  config = mpt_jax.named_config(name, dtype="bfloat16", dropout_rate=0.0)
  params = setup_lib.frozen_layout(common.random_params(config, seed), config,
                                   ModelConfig(frozen_dtype="bfloat16"))
  return config, params


def _init(module, seed: int) -> dict:
  return module.init(jax.random.PRNGKey(seed), jnp.zeros((1,), jnp.int32))["params"]


def _time(jitted, args, settings) -> tuple[float, float, float]:
  """(seconds per call, XLA's FLOPs per call, seconds to compile)."""
  start = time.perf_counter()
  compiled, flops = common.compile_with_flops(jitted, *args)
  compile_seconds = time.perf_counter() - start
  seconds = common.seconds_per_call(compiled, *args, warmup=1, repeats=settings.repeats,
                                    budget=settings.row_seconds)
  return seconds, flops, compile_seconds


def _train_step(model, prompt, frozen, batch, settings):
  optimizer = optimizers.make_optimizer()
  state = steps.initial_train_state({"prompt": _init(prompt, 0)}, optimizer, seed=0)
  step = jax.jit(steps.make_train_step(model, optimizer, use_dropout=False))
  return _time(step, (state, frozen, batch), settings)


def measure(stage: str, config, params, settings, peak: Optional[float]) -> Row:
  """One row of the table: `stage` of the backbone (`config`, `params`)."""
  tasks, length = settings.num_tasks, settings.prompt_length
  batch = {k: jnp.asarray(v) for k, v in common.batch(
      tasks, size=settings.batch, input_length=settings.input_length,
      target_length=settings.target_length).items()}
  prompt = prompts.DecomposedPrompt(tasks, length, config.d_model)
  if stage == "prompt tuning":
    model = models.PromptTuningModel(config, prompt)
    seconds, flops, compile_seconds = _train_step(model, prompt, params, batch, settings)
  elif stage == "distillation":
    teacher = prompts.PromptBank(tasks, length, config.d_model)
    model = models.DistillationModel(config, prompt, teacher)
    frozen = {**params, "teacher_prompt": _init(teacher, 1)}
    seconds, flops, compile_seconds = _train_step(model, prompt, frozen, batch, settings)
  else:
    model = models.PromptTuningModel(config, prompt)
    decode = jax.jit(lambda p, b: model.predict_batch_with_aux(
        p, b, settings.new_tokens, decoding_config=DecodingConfig(), eos_id=-1))
    inputs = {k: batch[k] for k in ("encoder_input_tokens", "task_ids")}
    seconds, _, compile_seconds = _time(decode, ({**params, "prompt": _init(prompt, 0)},
                                                 inputs), settings)
    return Row(settings.model, stage, settings.batch, settings.batch / seconds,
               settings.batch * settings.new_tokens / seconds, 1e3 * seconds,
               compile_seconds=compile_seconds)
  achieved = flops / seconds
  return Row(settings.model, stage, settings.batch, settings.batch / seconds, None,
             1e3 * seconds, flops, achieved / 1e12, achieved / peak if peak else None,
             compile_seconds)


def _error(exc: BaseException) -> str:
  lines = str(exc).strip().splitlines()
  return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:200]


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default=",".join(MODELS),
                      help="comma-separated named configs")
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--input-length", type=int, default=256)
  parser.add_argument("--prompt-length", type=int, default=100)
  parser.add_argument("--target-length", type=int, default=32)
  parser.add_argument("--new-tokens", type=int, default=32, help="decoded per example")
  parser.add_argument("--num-tasks", type=int, default=6)
  parser.add_argument("--repeats", type=int, default=10, help="timed calls per row")
  parser.add_argument("--row-seconds", type=float, default=30.0,
                      help="stop a row's timed calls after this long")
  parser.add_argument("--budget", type=float, default=440.0,
                      help="seconds for the whole run; rows left then are not run")
  default_output = os.path.join(os.environ["OUT"], "accelerator.json") \
      if os.environ.get("OUT") else None
  parser.add_argument("--output", default=default_output,
                      help="JSON of the table (default: $OUT/accelerator.json if $OUT)")
  parser.add_argument("--smoke", action="store_true",
                      help="tiny model and shapes, to check the script on a CPU")
  if parser.parse_args(argv).smoke:  # smoke sizes are defaults: flags given still win
    parser.set_defaults(models="t5_1_1_tiny", batch=2, input_length=8, prompt_length=4,
                        target_length=4, new_tokens=4, repeats=2)
  return parser.parse_args(argv)


def main(argv=None) -> int:
  started = time.monotonic()
  args = parse_args(argv)
  names = args.models.split(",")
  device = jax.devices()[0]
  peak = peak_flops(device.device_kind)
  header = {"device_kind": device.device_kind, "platform": device.platform,
            "jax": jax.__version__, "peak_bf16_flops": peak, "batch": args.batch,
            "input_length": args.input_length, "prompt_length": args.prompt_length,
            "target_length": args.target_length, "new_tokens": args.new_tokens,
            "num_tasks": args.num_tasks}
  report = Report(header, [(n, s) for n in names for s in STAGES], args.output)
  print(f"device: {device.device_kind} ({device.platform}), jax {jax.__version__}, peak "
        f"bf16 {'unknown' if peak is None else f'{peak / 1e12:.0f} TFLOP/s'}")
  print(f"batch {args.batch}, inputs {args.input_length} + prompt {args.prompt_length}, "
        f"targets {args.target_length}, {args.num_tasks} tasks; bf16 activations and "
        f"matrices, random backbones; decode greedy, {args.new_tokens} new tokens; fastest "
        f"of up to {args.repeats} calls after compiling\n")
  print("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS), flush=True)

  def out_of_time():
    report.stop(f"--budget {args.budget:.0f} s spent")
    os._exit(3)  # pylint: disable=protected-access
  watchdog = threading.Timer(args.budget - (time.monotonic() - started), out_of_time)
  watchdog.daemon = True
  watchdog.start()
  for name in names:
    settings = argparse.Namespace(**vars(args), model=name)
    try:
      config, params = _backbone(name)
    except Exception as exc:  # pylint: disable=broad-except
      for stage in STAGES:
        report.add(Row(name, stage, args.batch, error=f"backbone: {_error(exc)}"))
      continue
    for stage in STAGES:
      try:
        row = measure(stage, config, params, settings, peak)
      except Exception as exc:  # pylint: disable=broad-except
        row = Row(name, stage, args.batch, error=_error(exc))
      report.add(row)
    del params
  watchdog.cancel()
  print(f"\n{time.monotonic() - started:.0f} s in all", flush=True)
  return 1 if any(r.error for r in report.rows) else 0


if __name__ == "__main__":
  sys.exit(main())
