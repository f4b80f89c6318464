"""The SeqIO task catalog: the paper's datasets and a synthetic suite for offline runs.

Import the module a run names (t5x's MIXTURE_OR_TASK_MODULE style), e.g.
`tasks.synthetic` or `tasks.catalog`; importing registers its tasks and mixtures.
"""
