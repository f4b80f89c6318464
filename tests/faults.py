"""Damage done to a run the way clusters and disks do it, for the fault tests and the
soak (`make faults`): four corruptions of a saved checkpoint and a run's files as bytes.
"""

import json
import pathlib
import random

CORRUPTIONS = ("truncate", "flip_bytes", "garble_data_position", "drop_commit_marker")


def _array_files(step_dir: pathlib.Path) -> list[pathlib.Path]:
  """The files of the state item that hold array bytes (tensorstore's OCDBT data files)."""
  return sorted(p for p in (step_dir / "state").rglob("*") if p.is_file() and
                p.parent.name == "d")


def corrupt(step_dir, how: str, seed: int = 0) -> None:
  """Damages checkpoint directory `step_dir` in one of CORRUPTIONS' ways."""
  step_dir = pathlib.Path(step_dir)
  rng = random.Random(seed)
  if how == "truncate":  # a copy or a disk that stopped half-way
    for path in _array_files(step_dir):
      path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
  elif how == "flip_bytes":  # bit rot: the file reads, the values are wrong
    path = max(_array_files(step_dir), key=lambda p: p.stat().st_size)
    data = bytearray(path.read_bytes())
    start = rng.randrange(len(data) // 4, len(data) // 2)
    for i in range(start, start + 16):
      data[i] ^= 0xFF
    path.write_bytes(bytes(data))
  elif how == "garble_data_position":  # still valid JSON, another position
    path = step_dir / "data" / "metadata"
    position = json.loads(path.read_text())
    shard = sorted(position["consumed"])[0]
    position["consumed"][shard] += 1 + rng.randrange(5)
    path.write_text(json.dumps(position))
  elif how == "drop_commit_marker":  # a save that never finished committing
    (step_dir / "commit_success.txt").unlink()
  else:
    raise ValueError(f"Unknown corruption {how!r}; known: {CORRUPTIONS}.")


def files_as_bytes(directory) -> dict[str, bytes]:
  """Every file under `directory`, relative path -> content."""
  directory = pathlib.Path(directory)
  return {str(p.relative_to(directory)): p.read_bytes()
          for p in sorted(directory.rglob("*")) if p.is_file()}
