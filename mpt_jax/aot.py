r"""Compiles a stage's step for TPU topologies on this machine, without a TPU, and reports
what each device would hold (MaxText's train_compile.py role; t5x has none).

  python -m mpt_jax.aot --gin_file=runs/teachers.gin --gin_file=models/t5_1_1_xxl.gin \
    --topology=v5e-16 --topology=v5e-8

It reads the same gin files as `mpt_jax.train` and needs no weights, data or
accelerator: the backbone's shapes come from BACKBONE_CONFIG (set by models/*.gin) or
--backbone_config, prompt and teacher shapes from the stage's bindings. Paths the
stage would read (MODEL_DIR, TEACHER_PROMPTS, SOURCE_PROMPTS) need not exist. The
compiler is libtpu's (`pip install 'mpt_jax[aot]'`), run on the CPU through
`jax.experimental.topologies`. Per device it prints the arguments (frozen weights,
prompt, optimizer state, batch), the temporaries XLA allocates, their total against
the chip's HBM, the step's FLOPs and the compile time.
"""

import dataclasses
import importlib.util
import inspect
import json
import os
import pathlib
import sys
import time
from typing import Optional, Sequence

from absl import flags
import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np

from mpt_jax import cli
from mpt_jax import train  # pylint: disable=unused-import  (registers `train`: it names the prompt)
from mpt_jax.backbone import huggingface
from mpt_jax.backbone import params as backbone_params
from mpt_jax.backbone.config import named_config
from mpt_jax.backbone.config import T5Config
from mpt_jax.model import decoding
from mpt_jax.model import models
from mpt_jax.prompts import factories
from mpt_jax.prompts import modules as prompt_modules
from mpt_jax.runtime import steps
from mpt_jax.runtime import optimizers
from mpt_jax.runtime import setup as setup_lib
from mpt_jax.runtime.configs import DataConfig
from mpt_jax.runtime.configs import ModelConfig
from mpt_jax.runtime.partitioning import Partitioner
from tasks import registry

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("topology", ["v5e-8"], "Target(s): a Cloud TPU name "
                          "(v4-8, v5e-16, v5p-8, v6e-8, ...) or jax's 'v5e:4x4'.")
flags.DEFINE_enum("step", "train", ["train", "decode"], "The step to compile: the "
                  "stage's train step, or decoding its targets' length (eval, infer).")
flags.DEFINE_string("backbone_config", None, "The backbone's shape: a name (t5_1_1_xxl, "
                    "...) or a local HuggingFace directory; default: the gin macro "
                    "BACKBONE_CONFIG, else BACKBONE's config.json.")
flags.DEFINE_integer("bank_size", 1, "Runs trained (or evaluated) together as one bank "
                     "(`sweep`, the pipeline's stage 3): the step over each run's batch.")
flags.DEFINE_bool("json", False, "Print one JSON object per target instead of a table.")
flags.adopt_module_key_flags(cli)

GIB = 2**30
# Cloud TPU names -> (jax's topology name, its options). v4 and v5p run as megacore
# chips (one device per chip, as JAX uses them); their Cloud names count cores.
_MEGACORE = {"chip_config_name": "megacore"}
_ONE_CHIP = {"chips_per_host_bounds": (1, 1, 1)}
CLOUD_TOPOLOGIES = {
    "v4-8": ("v4:2x2x1", _MEGACORE), "v4-16": ("v4:2x2x2", _MEGACORE),
    "v4-32": ("v4:2x2x4", _MEGACORE),
    "v5e-1": ("v5e:1x1", _ONE_CHIP), "v5e-4": ("v5e:2x2", {}), "v5e-8": ("v5e:2x4", {}),
    "v5e-16": ("v5e:4x4", {}), "v5e-32": ("v5e:4x8", {}), "v5e-64": ("v5e:8x8", {}),
    "v5p-8": ("v5p:2x2x1", _MEGACORE), "v5p-16": ("v5p:2x2x2", _MEGACORE),
    "v6e-1": ("v6e:1x1", _ONE_CHIP), "v6e-4": ("v6e:2x2", {}), "v6e-8": ("v6e:2x4", {}),
    "v6e-16": ("v6e:4x4", {}),
}
# High-bandwidth memory per device, by jax's device_kind.
HBM_BYTES = {"TPU v4": 32 * GIB, "TPU v5 lite": 16 * GIB, "TPU v5": 95 * GIB,
             "TPU v6 lite": 32 * GIB}
# What the TPU runtime keeps for itself; a step "fits" within the rest.
RUNTIME_RESERVE = 0.03
LIBTPU_ADVICE = ("python -m mpt_jax.aot compiles with libtpu, which is not installed: "
                 "pip install 'mpt_jax[aot]' (libtpu at the version jax pins).")


def topology_devices(name: str) -> list:
  """The compile-only devices of a TPU topology, by Cloud TPU or jax name."""
  if importlib.util.find_spec("libtpu") is None:
    raise RuntimeError(LIBTPU_ADVICE)
  # Only compiling: several processes (tests, `make aot`) may load libtpu at once.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  topology, options = CLOUD_TOPOLOGIES.get(name, (name, {}))
  if ":" not in topology:
    raise ValueError(f"Unknown topology {name!r}: use one of {sorted(CLOUD_TOPOLOGIES)} "
                     "or jax's 'version:shape' form, e.g. 'v5e:4x4'.")
  return list(topologies.get_topology_desc(topology_name=topology, platform="tpu",
                                           **options).devices)


@dataclasses.dataclass
class Report:
  """One compiled step: per-device bytes and FLOPs as XLA's analyses give them."""
  target: str
  device_kind: str
  mesh: tuple[int, int]  # (data, model)
  argument_bytes: int
  output_bytes: int
  alias_bytes: int
  temp_bytes: int
  code_bytes: int
  flops: float  # per device, per step
  compile_seconds: float

  @property
  def total_bytes(self) -> int:
    """What the device holds while the step runs: donated outputs reuse their inputs."""
    return (self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes
            + self.code_bytes)

  @property
  def capacity_bytes(self) -> Optional[int]:
    return HBM_BYTES.get(self.device_kind)

  @property
  def fits(self) -> Optional[bool]:
    if self.capacity_bytes is None:
      return None
    return self.total_bytes <= self.capacity_bytes * (1 - RUNTIME_RESERVE)

  def to_json(self) -> dict:
    return {**dataclasses.asdict(self), "total_bytes": self.total_bytes,
            "capacity_bytes": self.capacity_bytes, "fits": self.fits}

  @classmethod
  def from_json(cls, value: dict) -> "Report":
    fields = {f.name: value[f.name] for f in dataclasses.fields(cls)}
    return cls(**{**fields, "mesh": tuple(fields["mesh"])})


def _required(value, what: str):
  if value is gin.REQUIRED:
    raise ValueError(f"{what} is not set; bind it as a training run would (e.g. "
                     "--gin.TARGET_MIXTURE=\"'mpt_glue_rte'\" for runs/adapt.gin).")
  return value


def _macro(name: str):
  try:
    value = gin.query_parameter(f"{name}/macro.value")
  except ValueError:
    return None
  return None if value is gin.REQUIRED else value


def _local_hf_config(path) -> Optional[T5Config]:
  if "://" in str(path) or not (pathlib.Path(str(path)) / huggingface.CONFIG_FILE).is_file():
    return None
  return huggingface.read_hf_config(path)


def backbone_config(name: Optional[str]) -> T5Config:
  """The backbone's shapes, without its weights: `name` (--backbone_config), else the
  BACKBONE_CONFIG macro models/*.gin set, each a named shape (t5_1_1_xxl) or a local
  HuggingFace directory; else BACKBONE's config.json when that is a local directory."""
  for candidate in (name, _macro("BACKBONE_CONFIG")):
    if candidate is not None:
      return _local_hf_config(candidate) or named_config(candidate)
  config = _local_hf_config(_macro("BACKBONE") or "")
  if config is None:
    raise ValueError("No backbone shape: include a models/*.gin file (it sets "
                     "BACKBONE_CONFIG) or pass --backbone_config=t5_1_1_xxl (or a local "
                     "HuggingFace directory).")
  return config


def _factory_arguments(factory) -> dict:
  """The arguments gin would call a prompt factory with (its defaults, then bindings).
  Bindings to macros left REQUIRED (paths this command never reads) stay unresolved."""
  defaults = {name: p.default for name, p in inspect.signature(factory).parameters.items()
              if p.default is not inspect.Parameter.empty}
  return {**defaults, **gin.get_bindings(factory)}


def prompt_module_shaped_as_bound(num_tasks: int, d_model: int) -> nn.Module:
  """A prompt module of the shape `train.prompt`'s factory would make, without reading
  the files it may start from (initialisation does not change what compiles)."""
  reference = gin.query_parameter("train.prompt")
  configurable = getattr(reference, "configurable", None)
  factory = configurable.wrapper if configurable else reference  # the decorated function
  args = _factory_arguments(factory)
  if factory is factories.single_prompt:
    return prompt_modules.SinglePrompt(args["length"], d_model)
  if factory is factories.prompt_bank:
    return prompt_modules.PromptBank(num_tasks, args["length"], d_model)
  if factory is factories.decomposed_prompt:
    return prompt_modules.DecomposedPrompt(num_tasks, args["length"], d_model, args["rank"],
                                           shared_per_task=args["shared_per_task"])
  raise ValueError(f"python -m mpt_jax.aot cannot size the prompt of {factory!r}; it knows "
                   "single_prompt, prompt_bank and decomposed_prompt.")


@dataclasses.dataclass
class AbstractRun:
  """A stage's step inputs as shapes and shardings over a mesh of target devices, for
  a bank of len(states) runs."""
  model: models.PromptTuningModel
  partitioner: Partitioner
  states: tuple[steps.TrainState, ...]  # ShapeDtypeStructs with shardings
  frozen: dict
  batch: dict  # [runs, batch, ...]
  max_decode_length: int


def _with_shardings(abstract, shardings):
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract, shardings)


def abstract_run(config: T5Config, devices: Optional[Sequence] = None,
                 bank_size: int = 1) -> AbstractRun:
  """The gin-configured stage over `devices` (default: this process's), for a bank of
  `bank_size` runs, every array abstract."""
  data = DataConfig()
  task_names = registry.task_names(_required(data.mixture_or_task_name,
                                             "DataConfig.mixture_or_task_name"))
  model_config = ModelConfig(teacher_prompts=None)
  prompt = prompt_module_shaped_as_bound(len(task_names), config.d_model)
  teacher = None
  if issubclass(model_config.model_cls, models.DistillationModel):
    teacher = prompt_modules.PromptBank(len(task_names), prompt.length, config.d_model)
  model = setup_lib.build_model(model_config, config, prompt, task_names, teacher=teacher)
  partitioner = Partitioner(devices=devices)
  ids = jnp.zeros((1,), jnp.int32)

  network = setup_lib.network_config(model_config, config)
  variables = backbone_params.abstract_variables(network)
  dtype = jnp.dtype(model_config.frozen_dtype or jnp.float32)
  frozen = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, dtype), variables["params"])
  frozen = _with_shardings(frozen, partitioner.param_shardings(variables["params_axes"]))
  if teacher is not None:
    teacher_vars = jax.eval_shape(teacher.init, jax.random.PRNGKey(0), ids)
    frozen["teacher_prompt"] = _with_shardings(
        teacher_vars["params"], partitioner.param_shardings(teacher_vars["params_axes"]))

  prompt_vars = jax.eval_shape(prompt.init, jax.random.PRNGKey(0), ids)
  state = steps.abstract_train_state({"prompt": prompt_vars["params"]},
                                     optimizers.make_optimizer(), seed=0)
  shardings = steps.train_state_shardings(
      partitioner, state, partitioner.param_shardings({"prompt": prompt_vars["params_axes"]}))
  lengths, rows = dict(data.task_feature_lengths), data.batch_size
  shapes = {"encoder_input_tokens": (rows, lengths["inputs"]),
            "decoder_input_tokens": (rows, lengths["targets"]),
            "decoder_target_tokens": (rows, lengths["targets"]),
            "decoder_loss_weights": (rows, lengths["targets"]), "task_ids": (rows,)}
  batch = {name: jax.ShapeDtypeStruct((bank_size, *shape), jnp.int32,
                                      sharding=partitioner.bank_batch_sharding)
           for name, shape in shapes.items()}
  return AbstractRun(model, partitioner, (_with_shardings(state, shardings),) * bank_size,
                     frozen, batch, lengths["targets"])


def lower_step(run: AbstractRun, step: str):
  """The jitted step, lowered for the run's abstract arguments: the loop's bank step, or
  the decoding a bank's evaluation runs (each run's prompt over its rows)."""
  partitioner, model = run.partitioner, run.model
  frozen_shardings = jax.tree.map(lambda a: a.sharding, run.frozen)
  if step == "train":
    state_shardings = [jax.tree.map(lambda a: a.sharding, state) for state in run.states]
    fn = steps.jit_bank_step(model, [optimizers.make_optimizer()] * len(run.states),
                             partitioner, state_shardings, frozen_shardings)
    guard = steps.FirstNonFinite(*(jax.ShapeDtypeStruct((len(run.states),), dtype,
                                                        sharding=partitioner.replicated)
                                   for dtype in (jnp.int32, jnp.float32)))
    return fn.lower(run.states, run.frozen, run.batch, guard)
  config = decoding.DecodingConfig()

  def decode(trainables, frozen, batch, rng):
    return jax.vmap(lambda trainable, rows: model.predict_batch_with_aux(
        models.merge(trainable, frozen), rows, run.max_decode_length,
        decoding_config=config, rng=rng))(steps.stack_runs(trainables), batch)
  trainables = tuple(state.params for state in run.states)
  rng = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=partitioner.replicated)
  return partitioner.jit(decode, out_shardings=partitioner.replicated).lower(
      trainables, run.frozen, run.batch, rng)


class DoesNotFit(ValueError):
  """XLA found no way to fit the step in the chip's memory."""


def compile_for(target: str, config: T5Config, step: str = "train",
                bank_size: int = 1) -> Report:
  """Compiles the gin-configured stage's `step` for `target`, for a bank of `bank_size`
  runs; the memory and FLOPs."""
  devices = topology_devices(target)
  run = abstract_run(config, devices, bank_size)
  started = time.time()
  try:
    compiled = lower_step(run, step).compile()
  except jax.errors.JaxRuntimeError as e:
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    raise DoesNotFit(
        f"The {step} step (a bank of {bank_size} run(s)) does not fit {target}: "
        f"{str(e).split('RESOURCE_EXHAUSTED: ')[-1].splitlines()[0]} Memory options (gin, "
        "README \"Memory at scale\"): ModelConfig.remat_policy = 'full', "
        "ModelConfig.frozen_dtype = 'bfloat16', a smaller BATCH_SIZE or --bank_size, or "
        "a larger slice.") from None
  seconds = time.time() - started
  memory = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  mesh = run.partitioner.mesh.shape
  return Report(target, devices[0].device_kind, (mesh["data"], mesh["model"]),
                memory.argument_size_in_bytes, memory.output_size_in_bytes,
                memory.alias_size_in_bytes, memory.temp_size_in_bytes,
                memory.generated_code_size_in_bytes, float(cost.get("flops", np.nan)),
                seconds)


def format_row(report: Report) -> str:
  fits = {True: "yes", False: "NO", None: "?"}[report.fits]
  capacity = f"{report.capacity_bytes / GIB:.2f}" if report.capacity_bytes else "?"
  return (f"| {report.target} | {report.mesh[0]}x{report.mesh[1]} | "
          f"{report.argument_bytes / GIB:.2f} | {report.temp_bytes / GIB:.2f} | "
          f"{report.total_bytes / GIB:.2f} | {capacity} | {fits} | "
          f"{report.flops / 1e12:.1f} | {report.compile_seconds:.0f} |")


TABLE_HEADER = ("| target | mesh (data x model) | arguments GiB | temporaries GiB | total GiB "
                "| HBM GiB | fits | TFLOPs / step / device | compile s |\n"
                "|---|---|---|---|---|---|---|---|---|")


def main(argv):
  # The compiler is libtpu's, driven from the CPU: no local accelerator is wanted.
  jax.config.update("jax_platforms", "cpu")
  cli.start(argv, distributed=False, finalize_gin=False)
  config = backbone_config(FLAGS.backbone_config)
  if not FLAGS.json:
    print(TABLE_HEADER)
  refused = []
  for target in FLAGS.topology:
    try:
      report = compile_for(target, config, FLAGS.step, FLAGS.bank_size)
    except DoesNotFit as e:
      refused.append(str(e))
      continue
    print(json.dumps(report.to_json()) if FLAGS.json else format_row(report), flush=True)
  if refused:
    sys.exit("\n".join(refused))


if __name__ == "__main__":
  cli.run(main)
