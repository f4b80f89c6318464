"""Metrics to TensorBoard (clu's writers) and to a JSON-lines file in MODEL_DIR."""

import json
import pathlib
from typing import Any, Mapping, Optional

from clu import metric_writers
import jax


class JsonLinesWriter(metric_writers.MetricWriter):
  """One JSON object per write: {"step": N, "<name>": value, ...}; easy to plot and diff."""

  def __init__(self, path):
    self.path = pathlib.Path(path)
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self._file = open(self.path, "a", encoding="utf-8")

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
    self._file.write(json.dumps(record) + "\n")
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
    self._file.flush()

  def close(self):
    self._file.close()


def create_writer(model_dir, name: str) -> metric_writers.MetricWriter:
  """TensorBoard under MODEL_DIR/<name> and MODEL_DIR/<name>.jsonl; other hosts only log."""
  model_dir = pathlib.Path(model_dir)
  if jax.process_index() != 0:
    return metric_writers.LoggingWriter()
  return metric_writers.MultiWriter([
      metric_writers.SummaryWriter(str(model_dir / name)),
      JsonLinesWriter(model_dir / f"{name}.jsonl"),
  ])
