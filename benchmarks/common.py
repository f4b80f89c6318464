"""Shared set-up of the benchmarks: the T5-small-shaped backbone, batches and timing."""

import time

import jax
import jax.numpy as jnp
import numpy as np

import mpt_jax

BATCH, INPUT_LENGTH, TARGET_LENGTH, PROMPT_LENGTH = 8, 256, 8, 100
SMALL_SHAPE = dict(d_model=512, num_layers=6, num_decoder_layers=6, num_heads=8, d_kv=64,
                   d_ff=2048, vocab_size=32128, dropout_rate=0.0)


def small_config():
  return mpt_jax.named_config("t5_1_0_small", **SMALL_SHAPE)


def random_params(config, seed=0):
  """A random backbone's parameters as device arrays (no transfer inside the timings)."""
  return jax.tree.map(jnp.asarray, mpt_jax.random_backbone(config, seed).params)


def batch(num_tasks=1, seed=0, size=BATCH, input_length=INPUT_LENGTH,
          target_length=TARGET_LENGTH):
  rng = np.random.default_rng(seed)
  targets = rng.integers(2, 32000, size=(size, target_length)).astype(np.int32)
  return {
      "encoder_input_tokens": rng.integers(2, 32000, size=(size, input_length)).astype(
          np.int32),
      "decoder_target_tokens": targets,
      "decoder_input_tokens": np.pad(targets[:, :-1], ((0, 0), (1, 0))),
      "decoder_loss_weights": np.ones_like(targets),
      "task_ids": (np.arange(size) % num_tasks).astype(np.int32),
  }


def seconds_per_call(fn, *args, warmup=2, repeats=10, budget=None):
  """Fastest wall time of `fn(*args)` (blocking on the result), after compilation.

  The minimum, not the mean: on a shared machine other work only ever adds time.
  `budget` (seconds) stops the timed calls early, after at least one, so that a slow
  device still finishes its run.
  """
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
    if budget is not None and sum(times) >= budget:
      break
  return float(np.min(times))


def interleaved_seconds(calls: dict, rounds=8, warmup=2) -> dict:
  """{name: fastest seconds} for several (fn, args) timed in alternation, so that a
  busy spell of the machine affects all of them alike."""
  for fn, args in calls.values():
    for _ in range(warmup):
      jax.block_until_ready(fn(*args))
  best = {name: float("inf") for name in calls}
  for _ in range(rounds):
    for name, (fn, args) in calls.items():
      start = time.perf_counter()
      jax.block_until_ready(fn(*args))
      best[name] = min(best[name], time.perf_counter() - start)
  return best


def compile_with_flops(jitted, *args):
  """(the compiled call, XLA's count of its floating-point operations): one compilation
  serves both the count and the timing."""
  compiled = jitted.lower(*args).compile()
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return compiled, float(analysis["flops"])


def flops_of(jitted, *args) -> float:
  """XLA's count of the floating-point operations of one call."""
  return compile_with_flops(jitted, *args)[1]


def matmul_flops_per_second(n=2048) -> float:
  """This machine's float32 matmul throughput, measured now (the benchmarks' peak)."""
  a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), jnp.float32)
  matmul = jax.jit(lambda x, y: x @ y)
  return 2 * n ** 3 / seconds_per_call(matmul, a, a, repeats=10)
