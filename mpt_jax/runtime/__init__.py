"""The built-in runtime: mesh and placement, optimisers, inputs, checkpoints, metric
writers, the run setup shared by every command, the train loop and evaluation."""
