"""The synthetic suite's own SentencePiece vocabulary and its `synth_spm_*` tasks: the
model is reproducible and cached, the demo's feature lengths never truncate, and span
corruption uses the vocabulary's extra ids."""

import pytest
import seqio

from tasks import registry
from tasks.synthetic import sampling
from tasks.synthetic import suite
from tasks.synthetic import vocabulary
import tasks.synthetic.spm as spm_tasks

SMALL_TEXT = {"corpus_sentences": 2000, "examples_per_task": 100}


def test_the_model_is_the_same_bytes_every_time():
  first = vocabulary.train_model(**SMALL_TEXT)
  assert first == vocabulary.train_model(**SMALL_TEXT)
  assert first != vocabulary.train_model(vocab_size=400, **SMALL_TEXT)


def test_model_path_trains_once_then_reuses_the_file(tmp_path, monkeypatch):
  path = tmp_path / "cache" / "synth.model"
  assert vocabulary.model_path(path) == path and path.is_file()
  path.write_bytes(b"left alone")  # a second call must read, not retrain
  assert vocabulary.model_path(path).read_bytes() == b"left alone"
  monkeypatch.setenv(vocabulary.ENV_VAR, str(tmp_path / "env.model"))
  assert vocabulary.model_path() == tmp_path / "env.model"
  monkeypatch.delenv(vocabulary.ENV_VAR)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert vocabulary.default_path().parent == tmp_path / "xdg" / "mpt_jax"


def test_spm_tasks_mirror_the_byte_tasks():
  names = spm_tasks.REGISTERED
  assert names.source_tasks == tuple(f"synth_spm_{s.name}" for s in suite.TASKS
                                     if s.role == "source")
  assert sorted(registry.task_names("synth_spm_target")) == sorted(names.target_tasks)
  assert registry.class_labels("synth_spm_rte") == ("entailment", "not_entailment")
  vocab = seqio.get_mixture_or_task("synth_spm_nli").output_features["inputs"].vocabulary
  assert isinstance(vocab, seqio.SentencePieceVocabulary)
  assert vocab.vocab_size == vocabulary.VOCAB_SIZE + vocabulary.EXTRA_IDS


@pytest.mark.parametrize("spec", suite.TASKS, ids=lambda s: s.name)
def test_sequence_lengths_never_truncate_and_text_round_trips(spec):
  task = seqio.get_mixture_or_task(f"synth_spm_{spec.name}")
  vocab = task.output_features["inputs"].vocabulary
  lengths = vocabulary.SEQUENCE_LENGTHS
  for split in ("validation", "test"):
    examples = task.get_dataset(None, split=split, shuffle=False, use_cached=False)
    for index, example in enumerate(examples.as_numpy_iterator()):
      expected = sampling.example(spec, split, index, 0)
      for field in ("inputs", "targets"):
        ids = example[field].tolist()
        assert len(ids) <= lengths[field], (split, index, field)
        assert vocab.decode(ids) == expected[field]
        assert vocab.unk_id not in ids


def test_pretraining_sentinels_are_the_extra_ids_and_fit_the_target_length():
  task = seqio.get_mixture_or_task(spm_tasks.REGISTERED.pretrain_task)
  vocab = task.output_features["targets"].vocabulary
  top = vocab.vocab_size - 1
  lengths = vocabulary.SEQUENCE_LENGTHS
  for example in task.get_dataset(None, split="validation", shuffle=False,
                                  use_cached=False).as_numpy_iterator():
    inputs, targets = example["inputs"].tolist(), example["targets"].tolist()
    assert len(inputs) <= lengths["inputs"] and len(targets) <= lengths["targets"]
    assert targets[0] == top
    sentinels = [t for t in inputs if t >= vocabulary.VOCAB_SIZE]
    assert sentinels == list(range(top, top - len(sentinels), -1))
    spans = {}
    for token in targets[:-1]:  # each sentinel, then the tokens it hides
      if token in sentinels:
        hidden = spans.setdefault(token, [])
      else:
        hidden.append(token)
    restored = [t for token in inputs[:-1] for t in spans.get(token, [token])]
    assert restored == vocab.encode(example["targets_pretokenized"].decode())
