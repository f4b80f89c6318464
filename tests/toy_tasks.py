"""Three tiny deterministic SeqIO tasks over ByteVocabulary, for runtime tests."""

import numpy as np
import seqio
import tensorflow as tf

from tasks import registry

WORDS = ["apple", "river", "stone", "cloud", "eagle", "tiger", "olive", "maple", "ocean",
         "piano", "lemon", "ivory", "zebra", "umbra", "night", "delta"]
SIZES = {"train": 64, "validation": 16}
VOCAB = seqio.ByteVocabulary()
TASKS = ("toy_vowel", "toy_first", "toy_upper")


def _examples(task, split):
  rng = np.random.default_rng(["train", "validation"].index(split) * 7 + TASKS.index(task))
  rows = []
  for _ in range(SIZES[split]):
    word = WORDS[rng.integers(len(WORDS))]
    if task == "toy_vowel":
      rows.append((f"vowel: {word}", "yes" if word[0] in "aeiou" else "no"))
    elif task == "toy_first":
      rows.append((f"first: {word}", word[0]))
    else:
      rows.append((f"upper: {word}", word[:3].upper()))
  return rows


def _register():
  for task in TASKS:
    def dataset_fn(split, shuffle_files, seed=None, task=task):
      del shuffle_files, seed
      inputs, targets = zip(*_examples(task, split))
      return tf.data.Dataset.from_tensor_slices({"inputs": list(inputs),
                                                 "targets": list(targets)})
    features = {k: seqio.Feature(VOCAB, add_eos=True) for k in ("inputs", "targets")}
    seqio.TaskRegistry.add(
        task, source=seqio.FunctionDataSource(dataset_fn, splits=list(SIZES),
                                              num_input_examples=SIZES),
        preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos],
        output_features=features,
        metric_fns=[lambda targets, predictions: {"accuracy": 100 * float(np.mean(
            [t == p for t, p in zip(targets, predictions)]))}])
  registry.register_class_labels("toy_vowel", ["yes", "no"])
  seqio.MixtureRegistry.add("toy_mix", list(TASKS), default_rate=1.0)
  seqio.MixtureRegistry.add("toy_targets", ["toy_vowel", "toy_first"], default_rate=1.0)


if "toy_mix" not in seqio.MixtureRegistry.names():
  _register()
