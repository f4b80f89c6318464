"""The prompted T5 and the model objects a trainer drives: losses, scoring, decoding."""
