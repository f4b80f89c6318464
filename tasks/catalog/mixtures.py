"""The catalog's mixtures, mixed examples-proportionally as the paper does.

`examples_proportional_rate.maximum` caps a task's weight at that many examples (None, the
default, is the paper's uncapped mixing). It is read when a mixture is sampled, so a gin
binding parsed after the catalog import still applies; `register_all(mixture_cap=...)`
fixes it per registration instead.
"""

import functools
from typing import Optional

import gin
import seqio

SOURCE6 = ("mpt_glue_mnli", "mpt_glue_qnli", "mpt_glue_qqp", "mpt_glue_sst2", "mpt_squad",
           "mpt_record")
MIXTURES = {
    "mpt_source6": SOURCE6,
    "mpt_source12": SOURCE6 + ("mpt_agnews", "mpt_commonsense_qa", "mpt_openbookqa",
                               "mpt_arc", "mpt_anli", "mpt_winogrande"),
    "glue_mpt": ("mpt_glue_mnli", "mpt_glue_qqp", "mpt_glue_qnli", "mpt_glue_sst2",
                 "mpt_glue_stsb", "mpt_glue_mrpc", "mpt_glue_rte", "mpt_glue_cola"),
    "superglue_mpt": ("mpt_superglue_multirc", "mpt_superglue_boolq", "mpt_superglue_wic",
                      "mpt_superglue_wsc", "mpt_superglue_cb"),
    "mrqa_mpt": ("mpt_mrqa_nq", "mpt_mrqa_hotpotqa", "mpt_mrqa_searchqa", "mpt_mrqa_newsqa"),
    "others_mpt": ("mpt_winogrande", "mpt_yelp", "mpt_scitail", "mpt_paws"),
}


@gin.configurable
def examples_proportional_rate(task: seqio.Task, maximum: Optional[int] = None) -> float:
  """A task's mixing weight: its number of training examples, capped at `maximum`."""
  return seqio.mixing_rate_num_examples(task, maximum=maximum)


def build_mixture(name: str, task_names, cap: Optional[int]) -> seqio.Mixture:
  rate = (examples_proportional_rate if cap is None
          else functools.partial(examples_proportional_rate, maximum=cap))
  return seqio.Mixture(name, list(task_names), default_rate=rate)
