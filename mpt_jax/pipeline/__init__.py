"""The whole method as one command (`python -m mpt_jax.pipeline`): stage 0 pretraining
for the offline demo, the stage chain, run directories, the results table and curves."""
