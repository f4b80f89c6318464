"""The synthetic suite tokenised by a SentencePiece model trained on it: `synth_spm_*`.

Importing this module registers every suite task, the pretraining task and the
mixtures again under the prefix `synth_spm`, with the suite's own BPE model
(`vocabulary.py`: trained on first use and cached; `$MPT_SYNTH_SPM` names the file).
Words become one or two pieces instead of 4-10 bytes, so sequences are about three
times shorter than with `seqio.ByteVocabulary` and a tiny backbone sees words: the
CPU demo runs on these.
"""

from tasks.synthetic import registration
from tasks.synthetic import vocabulary

PREFIX = "synth_spm"
REGISTERED = registration.register(vocabulary.sentencepiece_vocabulary(), prefix=PREFIX)
SEQUENCE_LENGTHS = vocabulary.SEQUENCE_LENGTHS
