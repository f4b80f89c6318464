"""MPT under `python -m t5x.train`: the same Flax network, prompts and losses as the
built-in runtime, wrapped as a t5x model. Imported only by the gin files in gin/t5x/;
t5x is not a dependency of mpt_jax (install it from its repository).
"""
