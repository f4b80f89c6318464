"""The frozen T5: its config and named sizes, the flax network, and its checkpoints
(HuggingFace and T5X, read and written)."""
