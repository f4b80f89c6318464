"""Local and remote (gs://) paths go through the same functions."""

from mpt_jax import paths


def test_atomic_writes_leave_no_partial_file(tmp_path):
  target = tmp_path / "sub" / "data.bin"
  paths.write_atomically(target, lambda local: open(local, "wb").write(b"abc"))
  assert target.read_bytes() == b"abc"
  assert sorted(p.name for p in target.parent.iterdir()) == ["data.bin"]


def test_local_copy_of_a_local_file_is_the_file(tmp_path):
  path = tmp_path / "x.txt"
  path.write_text("hi")
  with paths.local_copy(path) as local:
    assert local == str(path)
  assert paths.as_path("relative/x").is_absolute()
  assert str(paths.as_path("gs://bucket/a/b")) == "gs://bucket/a/b"
