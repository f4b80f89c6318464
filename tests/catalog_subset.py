"""A user's own task module on top of the catalog: two source and two target tasks, the
smallest mixtures a whole MPT pipeline runs on (tests name it in TASK_MODULES)."""

import seqio

import tasks.catalog  # pylint: disable=unused-import  (registers the catalog's tasks)

MIXTURES = {"mpt_test_sources": ("mpt_glue_mnli", "mpt_glue_sst2"),
            "mpt_test_targets": ("mpt_glue_rte", "mpt_glue_mrpc")}

for _name, _tasks in MIXTURES.items():
  seqio.MixtureRegistry.remove(_name)
  seqio.MixtureRegistry.add(_name, list(_tasks), default_rate=1.0)
