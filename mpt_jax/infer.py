r"""Decodes inputs with saved prompts and writes the predictions (t5x.infer's role).

  python -m mpt_jax.infer --gin_file=runs/infer.gin --gin.BACKBONE="'/data/t5-base'" \
    --gin.PROMPTS="'/tmp/mpt/adapt'" --gin.OUTPUT="'/tmp/mpt/predictions.jsonl'" \
    --gin.infer.inputs="'questions.jsonl'"     # or: --gin.infer.split="'test'"

Inputs are a task split (through the task's preprocessors), a JSONL file of
{"inputs": text, "task": name} lines, or a text file of one input per line (the task
from `infer.tasks`). The output is JSONL in input order: index, task, inputs, the
prediction, its score (the log-likelihood of the predicted tokens) and, for a split,
the targets. It is written a batch at a time: a rerun of an interrupted command
continues where it stopped, provided it decodes the same inputs with the same prompts
and settings (kept in OUTPUT.settings.json). SIGTERM stops after the current batch
with exit status 75, as training does.
"""

import dataclasses
import difflib
import functools
import json
import logging
import os
import sys
import time
from typing import Mapping, Optional, Sequence, Union

from absl import flags
import gin
import jax
from jax.experimental import multihost_utils
import numpy as np
import seqio

from mpt_jax import arrays as arrays_lib
from mpt_jax import cli
from mpt_jax import inference
from mpt_jax import paths
from mpt_jax.backbone.loading import load_backbone
from mpt_jax.model.decoding import DecodingConfig
from mpt_jax.prompts.loading import check_backbone
from mpt_jax.prompts.loading import load_prompts
from mpt_jax.runtime import data_checks
from mpt_jax.runtime import preemption
from mpt_jax.runtime.configs import ModelConfig
from mpt_jax.runtime.model_dir import resolve_prompts
from mpt_jax.runtime.partitioning import Partitioner
from tasks import registry
from tasks import vocab

flags.adopt_module_key_flags(cli)  # --help lists the shared flags


@dataclasses.dataclass
class Record:
  """One input: its task, its text, its token ids [input length] and, from a split, the
  targets."""
  task: str
  inputs: str
  tokens: np.ndarray
  targets: Optional[str] = None


class Stopped(Exception):
  """SIGTERM: the predictions so far are written; a rerun continues them."""


@functools.lru_cache(maxsize=None)
def _vocabulary(task: str, feature: str) -> seqio.Vocabulary:
  """The task's registered vocabulary, else the catalog's default (--sentencepiece_model)."""
  return inference.task_vocabulary(task, feature) or vocab.default_vocabulary()


def read_file(path, tasks: Union[None, str, Sequence[str]], known_tasks: Sequence[str],
              input_length: int) -> list[Record]:
  """Records of a .jsonl ({"inputs": ..., "task": ...}) or text file, each line checked
  before anything loads; errors name the file and line."""
  path = paths.as_path(path)
  if not path.is_file():
    raise FileNotFoundError(f"Inputs file {path} does not exist.")
  default_task = tasks if isinstance(tasks, str) else None
  if default_task is None and len(known_tasks) == 1:
    default_task = known_tasks[0]
  records = []
  for number, line in enumerate(path.read_text().splitlines(), start=1):
    if not line.strip():
      continue
    if path.suffix == ".jsonl":
      try:
        row = json.loads(line)
        text, task = row["inputs"], row.get("task", default_task)
      except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}:{number}: expected a JSON object with an 'inputs' string "
                         f"(and a 'task'), got {line[:80]!r} ({e}).") from e
    else:
      text, task = line, default_task
    if task is None:
      raise ValueError(f"{path}:{number} names no task, and the prompts hold "
                       f"{list(known_tasks)}: add \"task\" to each line or bind "
                       "infer.tasks = 'name' for all.")
    if task not in known_tasks:
      close = difflib.get_close_matches(task, known_tasks, n=1)
      raise ValueError(f"{path}:{number}: unknown task {task!r}; the prompts hold "
                       f"{list(known_tasks)}." + (f" Did you mean {close[0]}?" if close else ""))
    records.append(Record(task, text, inference.encode([text], _vocabulary(task, "inputs"),
                                                       input_length)[0]))
  if not records:
    raise ValueError(f"Inputs file {path} holds no inputs.")
  return records


def read_split(task_names: Sequence[str], split: str, feature_lengths: Mapping[str, int],
               num_examples: Optional[int]) -> list[Record]:
  """Records of each task's split in order, through the task's preprocessors."""
  records = []
  for name in task_names:
    task = registry.get_task_or_mixture(name)
    ds = task.get_dataset(dict(feature_lengths), split=split, shuffle=False, use_cached=False,
                          trim_output_features=True)
    ds = seqio.utils.trim_and_pad_dataset(ds.take(num_examples or -1),
                                          {"inputs": feature_lengths["inputs"]})
    vocabulary = task.output_features["inputs"].vocabulary
    for ex in ds.as_numpy_iterator():
      text = ex.get("inputs_pretokenized")
      text = (text.decode() if text is not None
              else inference.detokenize(ex["inputs"], vocabulary)[0])
      targets = ex.get("targets_pretokenized")
      records.append(Record(name, text, ex["inputs"].astype(np.int32),
                            targets.decode() if targets is not None else None))
  return records


class PredictionsFile:
  """The output JSONL, appended a batch at a time, and the settings it was written with
  (beside it, `<output>.settings.json`). Only process 0 reads or writes it."""

  def __init__(self, path, settings: dict):
    self.path = paths.as_path(path)
    if paths.is_remote(self.path):
      raise ValueError(f"OUTPUT {self.path}: predictions are appended to a local file "
                       "(object stores cannot append); write locally and copy it.")
    self.settings_path = self.path.parent / (self.path.name + ".settings.json")
    self.settings = settings

  def resume(self, records: Sequence[Record], batch_size: int) -> int:
    """How many inputs are already predicted. A partly written batch is dropped, so the
    rerun decodes the same batches; the kept lines must be the predictions of the
    first inputs, with the same settings."""
    if not self.path.exists():
      self.path.parent.mkdir(parents=True, exist_ok=True)
      self.settings_path.write_text(json.dumps(self.settings, indent=2, sort_keys=True))
      self.path.write_text("")
      return 0
    start_over = (f"Write to another OUTPUT, or delete {self.path} and "
                  f"{self.settings_path} to start over.")
    recorded = (json.loads(self.settings_path.read_text())
                if self.settings_path.exists() else None)
    if recorded != json.loads(json.dumps(self.settings)):
      changed = sorted(k for k in set(self.settings) | set(recorded or {})
                       if (recorded or {}).get(k) != self.settings.get(k))
      raise ValueError(f"{self.path} holds predictions made with other settings "
                       f"({', '.join(changed) or 'no settings file'}). {start_over}")
    text = self.path.read_text()
    lines = text.split("\n")[:-1]  # a last line without its newline was cut short
    if len(lines) > len(records):
      raise ValueError(f"{self.path} holds {len(lines)} predictions for {len(records)} "
                       f"inputs: the inputs changed. {start_over}")
    kept = len(lines) if len(lines) == len(records) else len(lines) // batch_size * batch_size
    for index, line in enumerate(lines[:kept]):
      try:
        row = json.loads(line)
      except ValueError as e:
        raise ValueError(f"{self.path}:{index + 1} is not JSON. {start_over}") from e
      if (row.get("index"), row.get("task"), row.get("inputs")) != (
          index, records[index].task, records[index].inputs):
        raise ValueError(f"{self.path}:{index + 1} is not the prediction of input {index} "
                         f"({records[index].task}: {records[index].inputs[:60]!r}): the "
                         f"inputs changed. {start_over}")
    if kept < len(lines) or not text.endswith("\n") and text:
      self.path.write_text("".join(line + "\n" for line in lines[:kept]))
    return kept

  def append(self, rows: Sequence[dict]) -> None:
    with open(self.path, "a", encoding="utf-8") as f:
      f.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
      f.flush()
      os.fsync(f.fileno())


def _resume_on_every_process(predictions: PredictionsFile, records, batch_size) -> int:
  """Process 0's `resume`, agreed by every process; its refusal stops them all."""
  error, done = None, 0
  if jax.process_index() == 0:
    try:
      done = predictions.resume(records, batch_size)
    except ValueError as e:
      error, done = e, -1
  if jax.process_count() > 1:
    done = int(multihost_utils.broadcast_one_to_all(np.int32(done)))
  if error is not None:
    raise error
  if done < 0:
    raise ValueError(f"Process 0 refused to continue {predictions.path}; see its log.")
  return done


class _Progress:
  """Logs examples/s and the time left every `period` seconds, and at the end."""

  def __init__(self, total: int, done: int, period: float):
    self.total, self.done, self.period = total, done, period
    self.start = self.last = time.monotonic()
    self.first = done

  def update(self, done: int, final: bool = False) -> None:
    self.done, now = done, time.monotonic()
    if not final and now - self.last < self.period:
      return
    self.last = now
    rate = (done - self.first) / max(now - self.start, 1e-9)
    left = (self.total - done) / rate if rate else float("inf")
    eta = time.strftime("%H:%M:%S", time.gmtime(left)) if np.isfinite(left) else "?"
    logging.info("infer: %d/%d examples (%.0f%%), %.1f examples/s, ETA %s", done,
                 self.total, 100 * done / self.total, rate, eta)


@gin.configurable
def infer(output: str = gin.REQUIRED, *, prompts: str = gin.REQUIRED,
          backbone: str = gin.REQUIRED, task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
          inputs: Optional[str] = None, tasks: Union[None, str, Sequence[str]] = None,
          split: str = "validation", num_examples: Optional[int] = None,
          batch_size: int = 32, model: Optional[ModelConfig] = None,
          partitioner: Optional[Partitioner] = None,
          progress_seconds: float = 30.0) -> dict:
  """Predicts `inputs` (a file) or each task's `split`, writing `output`; returns
  {'output', 'examples', 'resumed', 'seconds'}.

  `tasks` names the tasks of a split (default: the prompts' tasks), or the one task of a
  file's lines that name none. Decoding follows the gin-bound DecodingConfig; the
  predictions are at most task_feature_lengths['targets'] tokens long.
  """
  prompts_path, _ = resolve_prompts(prompts)
  prompt_set = load_prompts(prompts_path)
  if inputs is not None:
    records = read_file(inputs, tasks, prompt_set.task_names, task_feature_lengths["inputs"])
  else:
    names = [tasks] if isinstance(tasks, str) else list(tasks or prompt_set.task_names)
    data_checks.check_tasks(names, split, task_feature_lengths)
    records = read_split(names, split, task_feature_lengths, num_examples)
  loaded = load_backbone(backbone)
  check_backbone(prompt_set, prompts_path, loaded)
  decoding_config = DecodingConfig()
  settings = {"prompts": str(prompts_path), "prompts_sha256": arrays_lib.sha256(
                  prompt_set.arrays), "backbone_fingerprint": loaded.fingerprint,
              "decoding": dataclasses.asdict(decoding_config),
              "task_feature_lengths": dict(task_feature_lengths),
              "inputs": str(paths.as_path(inputs)) if inputs else {"split": split}}
  predictions = PredictionsFile(output, settings)
  done = _resume_on_every_process(predictions, records, batch_size)
  predictor = inference.Predictor(loaded, prompt_set, batch_size=batch_size,
                                  max_decode_length=task_feature_lengths["targets"],
                                  decoding_config=decoding_config, model=model,
                                  partitioner=partitioner)
  if done:
    logging.info("infer: %d of %d inputs already predicted in %s; continuing.", done,
                 len(records), predictions.path)
  progress = _Progress(len(records), done, progress_seconds)
  watch = preemption.PreemptionWatch()
  try:
    for start in range(done, len(records), batch_size):
      batch = records[start:start + batch_size]
      tokens, scores = predictor.predict_tokens(
          np.stack([r.tokens for r in batch]), np.array([predictor.task_id(r.task)
                                                       for r in batch]), start // batch_size)
      if jax.process_index() == 0:
        predictions.append([_row(start + i, record, row, score)
                            for i, (record, row, score) in enumerate(zip(batch, tokens,
                                                                         scores))])
      progress.update(start + len(batch))
      if start + len(batch) < len(records) and watch.should_stop(start // batch_size):
        raise Stopped(f"Stopped by SIGTERM after {start + len(batch)} of {len(records)} "
                      f"inputs, all written to {predictions.path}. Rerun the same command "
                      "to continue.")
  finally:
    watch.close()
  progress.update(len(records), final=True)
  return {"output": str(predictions.path), "examples": len(records), "resumed": done,
          "seconds": time.monotonic() - progress.start}


def _row(index: int, record: Record, tokens: np.ndarray, score: float) -> dict:
  prediction, _ = inference.detokenize(tokens, _vocabulary(record.task, "targets"))
  row = {"index": index, "task": record.task, "inputs": record.inputs,
         "prediction": prediction, "score": float(score)}
  if record.targets is not None:
    row["targets"] = record.targets
  return row


def main(argv):
  cli.start(argv)
  try:
    infer()
  except Stopped as e:
    logging.warning("%s", e)
    sys.exit(preemption.PREEMPTED_EXIT_CODE)


if __name__ == "__main__":
  cli.run(main)
