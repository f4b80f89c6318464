"""Local and remote (gs://) paths go through the same functions; the remote-only
branches are exercised here on local files by declaring them remote."""

import json

import numpy as np

from mpt_jax import metric_writers
from mpt_jax.io import files


def test_atomic_writes_leave_no_partial_file(tmp_path):
  target = tmp_path / "sub" / "data.bin"
  files.write_atomically(target, lambda local: open(local, "wb").write(b"abc"))
  assert target.read_bytes() == b"abc"
  assert sorted(p.name for p in target.parent.iterdir()) == ["data.bin"]


def test_local_copy_of_a_local_file_is_the_file(tmp_path):
  path = tmp_path / "x.txt"
  path.write_text("hi")
  with files.local_copy(path) as local:
    assert local == str(path)
  assert files.as_path("relative/x").is_absolute()
  assert str(files.as_path("gs://bucket/a/b")) == "gs://bucket/a/b"


def test_remote_json_lines_are_rewritten_whole_and_kept_across_writers(tmp_path, monkeypatch):
  monkeypatch.setattr(metric_writers.files, "is_remote", lambda path: True)
  path = tmp_path / "train.jsonl"
  writer = metric_writers.JsonLinesWriter(path, remote_flush_seconds=3600)
  writer.write_scalars(1, {"loss": np.float32(2.0)})
  assert not path.exists()  # buffered: Cloud Storage cannot append
  writer.close()
  resumed = metric_writers.JsonLinesWriter(path, remote_flush_seconds=0)
  resumed.write_scalars(2, {"loss": 1.5})
  rows = [json.loads(line) for line in path.read_text().splitlines()]
  assert rows == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
