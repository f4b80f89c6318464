"""A deterministic synthetic multitask suite for offline MPT runs (see README.md).

Importing this package registers, with `seqio.ByteVocabulary()` and default sizes:
six source tasks shaped like the paper's (MNLI, QNLI, QQP, SST-2, SQuAD, ReCoRD),
three held-out target tasks that share their skills (RTE, Yelp, MRQA), the
span-corruption task `synth_pretrain`, and the mixtures `synth_source`,
`synth_target` and `synth_pretrain_multitask`. `tasks.synthetic.spm` registers the
same under `synth_spm_` with the suite's own SentencePiece model. Call `register(...)`
for another vocabulary, sizes or prefix.
"""

from tasks.synthetic.corpus import pretraining_corpus
from tasks.synthetic.registration import register
from tasks.synthetic.registration import Registered
from tasks.synthetic.sampling import MAX_INPUT_BYTES
from tasks.synthetic.sampling import MAX_TARGET_BYTES
from tasks.synthetic.span_corruption import target_length

# Feature lengths that never truncate with seqio.ByteVocabulary (EOS included).
SEQUENCE_LENGTHS = {"inputs": MAX_INPUT_BYTES + 1, "targets": MAX_TARGET_BYTES + 1}
# The longest `synth_pretrain` target at the default noise (15 bytes, 5 sentinels, EOS).
PRETRAIN_TARGET_TOKENS = target_length(MAX_INPUT_BYTES, 0.15, 3.0)

_DEFAULT = register()
SOURCE_TASKS = _DEFAULT.source_tasks
TARGET_TASKS = _DEFAULT.target_tasks
PRETRAIN_TASK = _DEFAULT.pretrain_task
SOURCE_MIXTURE = _DEFAULT.source_mixture
TARGET_MIXTURE = _DEFAULT.target_mixture
PRETRAIN_MIXTURE = _DEFAULT.pretrain_mixture
