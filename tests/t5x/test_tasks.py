"""mpt_jax/t5x/tasks.py: `with_task_ids` registers copies of a run's tasks whose examples
carry their task id (the task's index in the run's task list), for a task and for a
mixture, with the tasks' class labels and primary metrics. Skipped where t5x is not
installed."""

import pytest

pytest.importorskip(
    "t5x.train", reason="t5x is not importable: it is not on PyPI; install it from "
    "github.com/google-research/t5x to run the t5x adapter's tests.")

# pylint: disable=g-import-not-at-top
import seqio

from mpt_jax.t5x import tasks as mpt_tasks
from tasks import registry
from tests import toy_tasks

LENGTHS = {"inputs": 16, "targets": 4}
MODULES = ["tests.toy_tasks"]
# Each toy task's inputs start with its own word.
PREFIXES = {"vowel": "toy_vowel", "first": "toy_first", "upper": "toy_upper"}


def _ids_by_task(name, num_examples=48):
  """{task: set of task ids its examples carry} over the start of `name`'s stream."""
  dataset = seqio.get_mixture_or_task(name).get_dataset(
      LENGTHS, split="validation", shuffle=False, seed=0)
  seen = {}
  for example in dataset.take(num_examples).as_numpy_iterator():
    text = toy_tasks.VOCAB.decode(example["inputs"].tolist())
    task = PREFIXES[text.split(":")[0]]
    assert example["task_ids"].shape == (1,)
    seen.setdefault(task, set()).add(int(example["task_ids"][0]))
  return seen


def test_a_mixture_copy_tags_each_example_with_its_task_index_in_the_mixture():
  name = mpt_tasks.with_task_ids("toy_mix", MODULES)
  order = registry.task_names("toy_mix")
  assert order == ["toy_first", "toy_upper", "toy_vowel"]  # seqio sorts by name
  assert isinstance(seqio.get_mixture_or_task(name), seqio.Mixture)
  assert _ids_by_task(name) == {task: {order.index(task)} for task in order}


def test_a_task_copy_tags_every_example_with_task_id_zero():
  name = mpt_tasks.with_task_ids("toy_vowel", MODULES)
  assert isinstance(seqio.get_mixture_or_task(name), seqio.Task)
  assert _ids_by_task(name) == {"toy_vowel": {0}}


def test_a_task_keeps_the_id_of_each_run_it_is_registered_for():
  # toy_vowel is task 2 of toy_mix, task 1 of toy_targets and task 0 alone: one process
  # registering all three runs must not hand one run's copy to another.
  mix, targets, alone = (mpt_tasks.with_task_ids(name, MODULES)
                         for name in ("toy_mix", "toy_targets", "toy_vowel"))
  assert _ids_by_task(mix)["toy_vowel"] == {2}
  assert _ids_by_task(targets) == {"toy_first": {0}, "toy_vowel": {1}}
  assert _ids_by_task(alone) == {"toy_vowel": {0}}


def test_registering_the_same_run_twice_returns_the_same_copies():
  first = mpt_tasks.with_task_ids("toy_targets", MODULES)
  again = mpt_tasks.with_task_ids("toy_targets", MODULES)
  assert first == again
  assert registry.task_names(first) == registry.task_names(again)


def test_a_mixture_copy_keeps_the_mixture_rates():
  if "toy_t5x_rated" not in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.add("toy_t5x_rated", [("toy_first", 1.0), ("toy_vowel", 3.0)])
  copy = seqio.get_mixture_or_task(mpt_tasks.with_task_ids("toy_t5x_rated", MODULES))
  rates = {task.name: copy.get_rate(task) for task in copy.tasks}
  assert rates == {mpt_tasks.task_copy_name("toy_first", 0): 1.0,
                   mpt_tasks.task_copy_name("toy_vowel", 1): 3.0}


def test_copies_carry_the_class_labels_and_primary_metric_of_their_task():
  if "toy_t5x_scored" not in seqio.TaskRegistry.names():
    seqio.TaskRegistry.add_provider(
        "toy_t5x_scored", seqio.get_mixture_or_task("toy_first").replace(
            name="toy_t5x_scored"))
    registry.register_primary_metric("toy_t5x_scored", "accuracy")
  vowel = mpt_tasks.with_task_ids("toy_vowel", MODULES)
  scored = mpt_tasks.with_task_ids("toy_t5x_scored", MODULES)
  assert registry.class_labels(vowel) == ("yes", "no")
  assert registry.primary_metric(vowel) is None
  assert registry.primary_metric(scored) == "accuracy"
  assert registry.class_labels(scored) is None
  # Rank classification reads the labels' token ids through the copy's vocabulary.
  assert registry.label_token_ids(vowel) == [list(toy_tasks.VOCAB.encode(label))
                                            for label in ("yes", "no")]
