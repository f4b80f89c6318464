"""Metrics to TensorBoard (clu's writers) and to a JSON-lines file in MODEL_DIR."""

import json
import time
from typing import Any, Mapping, Optional

from clu import metric_writers
import jax

from mpt_jax import paths


class JsonLinesWriter(metric_writers.MetricWriter):
  """One JSON object per write: {"step": N, "<name>": value, ...}; easy to plot and diff.

  A local file is appended to line by line. Cloud Storage cannot append, so a remote
  file is rewritten whole, at most every `remote_flush_seconds` and on close.
  """

  def __init__(self, path, remote_flush_seconds: float = 60.0):
    self.path = paths.as_path(path)
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self._remote = paths.is_remote(self.path)
    self._flush_seconds = remote_flush_seconds
    self._written_at = time.time()
    if self._remote:
      self._lines = self.path.read_text().splitlines() if self.path.exists() else []
    else:
      self._file = open(self.path, "a", encoding="utf-8")

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    line = json.dumps({"step": int(step), **{k: float(v) for k, v in scalars.items()}})
    if self._remote:
      self._lines.append(line)
      if time.time() - self._written_at > self._flush_seconds:
        self.flush()
    else:
      self._file.write(line + "\n")
      self._file.flush()

  def write_summaries(self, step, values, metadata=None):
    del step, values, metadata

  def write_images(self, step, images):
    del step, images

  def write_videos(self, step, videos):
    del step, videos

  def write_audios(self, step, audios, *, sample_rate):
    del step, audios, sample_rate

  def write_texts(self, step, texts):
    del step, texts

  def write_histograms(self, step, arrays, num_buckets: Optional[Mapping[str, int]] = None):
    del step, arrays, num_buckets

  def write_hparams(self, hparams):
    del hparams

  def flush(self):
    if self._remote:
      self.path.write_text("".join(line + "\n" for line in self._lines))
      self._written_at = time.time()
    else:
      self._file.flush()

  def close(self):
    if self._remote:
      self.flush()
    else:
      self._file.close()


def create_writer(model_dir, name: str) -> metric_writers.MetricWriter:
  """TensorBoard under MODEL_DIR/<name> and MODEL_DIR/<name>.jsonl; other hosts only log."""
  model_dir = paths.as_path(model_dir)
  if jax.process_index() != 0:
    return metric_writers.LoggingWriter()
  return metric_writers.MultiWriter([
      metric_writers.SummaryWriter(str(model_dir / name)),
      JsonLinesWriter(model_dir / f"{name}.jsonl"),
  ])
