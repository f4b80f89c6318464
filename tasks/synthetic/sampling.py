"""Examples as pure functions of (task, split, index, seed), with disjoint splits.

Each example gets its own numpy Generator seeded by (seed, task, split, index,
attempt), so any example can be rebuilt alone and nothing depends on global state
or on the order examples are read. Splits are kept disjoint by the input text itself:
a stable hash of the inputs assigns every possible example to exactly one split, and
an index redraws (attempt 1, 2, ...) until it lands in its own split. Draws over the
input budget are redrawn the same way (targets are short by construction).
"""

import zlib

import numpy as np

from tasks.synthetic import suite

SPLITS = ("train", "validation", "test")
# Shares of the hash space, in twentieths: 80% train, 10% validation, 10% test.
_BUCKETS = {"train": range(0, 16), "validation": range(16, 18), "test": range(18, 20)}
# Budgets for a byte vocabulary: 100 input bytes; the longest label, 'not_entailment',
# is 14 bytes, so 16 target tokens hold any target and its EOS.
MAX_INPUT_BYTES = 100
MAX_TARGET_BYTES = 15
_MAX_ATTEMPTS = 1000


def _stable_key(text: str) -> int:
  return zlib.crc32(text.encode("utf-8"))


def split_of(task_name: str, inputs: str) -> str:
  """The one split an input text may appear in, for this task."""
  bucket = _stable_key(f"{task_name}\n{inputs}") % 20
  return next(split for split, shares in _BUCKETS.items() if bucket in shares)


def check_split(split: str) -> None:
  if split not in SPLITS:
    raise ValueError(f"Unknown split {split!r}; the synthetic suite has {SPLITS}.")


def example(spec: suite.TaskSpec, split: str, index: int, seed: int) -> dict[str, str]:
  """The `index`-th example of a task's split: {'inputs': ..., 'targets': ...}.

  Classification labels cycle through the task's labels with the index, so any
  window of consecutive examples is balanced.
  """
  check_split(split)
  label = spec.labels[index % len(spec.labels)] if spec.labels else None
  for attempt in range(_MAX_ATTEMPTS):
    rng = np.random.default_rng(
        [seed, _stable_key(spec.name), SPLITS.index(split), index, attempt])
    inputs, targets = spec.make(rng, label)
    if len(inputs.encode()) <= MAX_INPUT_BYTES and split_of(spec.name, inputs) == split:
      return {"inputs": inputs, "targets": targets}
  raise RuntimeError(
      f"Task {spec.name!r} drew no {split} example within {MAX_INPUT_BYTES} input "
      f"bytes in {_MAX_ATTEMPTS} attempts (index {index}); its templates are too long.")


def examples(spec: suite.TaskSpec, split: str, size: int, seed: int):
  """Yields examples 0 .. size - 1 of a split; a prefix of any larger size."""
  check_split(split)
  for index in range(size):
    yield example(spec, split, index, seed)
