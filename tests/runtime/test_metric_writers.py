"""Metrics to JSON lines (and TensorBoard): a remote file, which cannot be appended to,
is rewritten whole; its branch is exercised here on local files declared remote."""

import json

import numpy as np

from mpt_jax.runtime import metric_writers


def test_remote_json_lines_are_rewritten_whole_and_kept_across_writers(tmp_path, monkeypatch):
  monkeypatch.setattr(metric_writers.paths, "is_remote", lambda path: True)
  path = tmp_path / "train.jsonl"
  writer = metric_writers.JsonLinesWriter(path, remote_flush_seconds=3600)
  writer.write_scalars(1, {"loss": np.float32(2.0)})
  assert not path.exists()  # buffered: Cloud Storage cannot append
  writer.close()
  resumed = metric_writers.JsonLinesWriter(path, remote_flush_seconds=0)
  resumed.write_scalars(2, {"loss": 1.5})
  rows = [json.loads(line) for line in path.read_text().splitlines()]
  assert rows == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
