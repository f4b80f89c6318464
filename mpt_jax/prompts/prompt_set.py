"""Our prompt file: the trained prompt parameters with the facts needed to use them.

A `.safetensors` file keeps its facts in the header metadata; a `.npz` file keeps them
as a JSON string under the key `__metadata__`. Either way it records the kind of
prompt, the task names in task-id order, l, d, r, the backbone's config, the SHA-256
of its arrays and, where known, the backbone's fingerprint and the training step.
Never a pickle. A file that is damaged, fails its checksum or holds NaN or inf is
refused with its name and the tensor at fault, and no non-finite prompt is ever saved.
"""

import dataclasses
import difflib
import io
import json
import zipfile
from typing import Any, Optional, Union

from etils import epath
import numpy as np
import safetensors
import safetensors.numpy

from mpt_jax import arrays as arrays_lib
from mpt_jax import paths
from mpt_jax.prompts import modules as prompt_modules

FORMAT = "mpt_jax.prompts/1"
_METADATA_KEY = "__metadata__"
# The parameter names of each kind, as the prompt modules name them.
KINDS = {
    "single": ("prompt",),
    "bank": ("prompts",),
    "decomposed": (prompt_modules.SHARED, prompt_modules.TASK_COLS, prompt_modules.TASK_ROWS),
    # Each task's P* ∘ U_k V_k computed once: the serving form, used as a bank.
    "merged": ("prompts",),
}


class PromptFileError(ValueError):
  """A prompt file cannot be used: unreadable, damaged, or of the wrong kind or shape."""


def _close_matches(name: str, known) -> str:
  close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
  return f" Did you mean {', '.join(close)}?" if close else ""


@dataclasses.dataclass
class PromptSet:
  """Trained prompts of one kind, with their task names in task-id order."""

  kind: str
  arrays: dict[str, np.ndarray]
  task_names: tuple[str, ...]
  backbone_config: Optional[dict[str, Any]] = None
  metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

  @classmethod
  def from_module(cls, module, params, task_names, **facts) -> "PromptSet":
    """The parameters of a prompt module (device or host arrays, fetched to the host),
    of the kind the module declares."""
    return cls(module.kind, dict(params), task_names, **facts)

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"Unknown prompt kind {self.kind!r}; known: {sorted(KINDS)}.")
    names = KINDS[self.kind]
    if set(self.arrays) != set(names):
      raise ValueError(f"A {self.kind} prompt needs exactly the arrays {list(names)}, "
                       f"got {sorted(self.arrays)}.")
    self.arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in self.arrays.items()}
    self.task_names = tuple(self.task_names)
    self._check_shapes()

  def _check_shapes(self):
    a = self.arrays
    if self.kind == "single":
      expected = {"prompt": 2}
    elif self.kind in ("bank", "merged"):
      expected = {"prompts": 3}
    else:
      expected = {prompt_modules.TASK_COLS: 3, prompt_modules.TASK_ROWS: 3}
    for name, ndim in expected.items():
      if a[name].ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a[name].shape}.")
    if self.kind == "decomposed":
      shared = a[prompt_modules.SHARED]
      k, l2, r = a[prompt_modules.TASK_COLS].shape
      if shared.ndim not in (2, 3) or (shared.ndim == 3 and shared.shape[0] != k):
        raise ValueError(f"P* must be [l, d] or one per task [{k}, l, d], got {shared.shape}.")
      l, d = shared.shape[-2:]
      if a[prompt_modules.TASK_ROWS].shape != (k, r, d) or l2 != l:
        raise ValueError(
            f"Inconsistent decomposed prompt: P* {shared.shape}, "
            f"U {a[prompt_modules.TASK_COLS].shape}, V {a[prompt_modules.TASK_ROWS].shape}; "
            f"expected U (K, {l}, r) and V (K, r, {d}).")
    if self.kind != "single" and len(self.task_names) != self.num_tasks:
      raise ValueError(f"{len(self.task_names)} task names for {self.num_tasks} prompts.")

  # --- shape facts -----------------------------------------------------------
  @property
  def length(self) -> int:
    return self.merged().shape[1]

  @property
  def embed_dim(self) -> int:
    return self.merged().shape[2]

  @property
  def rank(self) -> Optional[int]:
    return self.arrays[prompt_modules.TASK_COLS].shape[2] if self.kind == "decomposed" else None

  @property
  def shared_per_task(self) -> bool:
    """Whether each task has its own P* (independent single-target MPT prompts)."""
    return self.kind == "decomposed" and self.arrays[prompt_modules.SHARED].ndim == 3

  @property
  def num_tasks(self) -> int:
    if self.kind == "single":
      return 1
    if self.kind == "decomposed":
      return self.arrays[prompt_modules.TASK_COLS].shape[0]
    return self.arrays["prompts"].shape[0]

  # --- prompts -----------------------------------------------------------------
  def merged(self) -> np.ndarray:
    """[K, l, d]: each task's prompt as the encoder sees it (P* ∘ U_k V_k merged)."""
    a = self.arrays
    if self.kind == "single":
      return a["prompt"][None]
    if self.kind in ("bank", "merged"):
      return a["prompts"]
    return prompt_modules.merge_decomposed(*(a[n] for n in KINDS["decomposed"]), xp=np)

  def to_merged(self) -> "PromptSet":
    """The `merged` kind: one l x d prompt per task, so that serving skips the
    Hadamard product (same prompts, to float32 rounding). Single, bank and merged
    prompts already have that form and are returned as they are."""
    if self.kind != "decomposed":
      return self
    return PromptSet("merged", {"prompts": self.merged()}, self.task_names,
                     self.backbone_config, {**self.metadata, "merged_from": self.kind})

  def with_task_names(self, task_names) -> "PromptSet":
    """The same prompts under other names: a list in task-id order, or a mapping from
    current names (or ids) to new ones, e.g. {'task_0': 'rte'} for a PEFT adapter."""
    if isinstance(task_names, dict):
      renamed = list(self.task_names)
      for old, new in task_names.items():
        known = old in self.task_names
        renamed[self.task_names.index(old) if known else self.task_index(old)] = new
    else:
      renamed = list(task_names)
      if len(renamed) != len(self.task_names):
        raise ValueError(f"{len(renamed)} task names given for a prompt with "
                         f"{len(self.task_names)} tasks {list(self.task_names)}.")
    if len(set(renamed)) != len(renamed):
      raise ValueError(f"Task names must be distinct, got {renamed}.")
    return dataclasses.replace(self, task_names=tuple(renamed))

  def task_index(self, task: Union[str, int]) -> int:
    if isinstance(task, (int, np.integer)):
      if not 0 <= task < max(self.num_tasks, len(self.task_names)):
        raise ValueError(f"Task id {task} is out of range: this prompt file has "
                         f"{self.num_tasks} task(s) {list(self.task_names)}.")
      return 0 if self.kind == "single" else int(task)
    if task not in self.task_names:
      raise ValueError(f"Unknown task {task!r}; this prompt file has "
                       f"{list(self.task_names)}.{_close_matches(task, self.task_names)}")
    return 0 if self.kind == "single" else self.task_names.index(task)

  def prompt(self, task: Union[str, int]) -> np.ndarray:
    """[l, d] for a task name or task id."""
    return self.merged()[self.task_index(task)]

  # --- files -----------------------------------------------------------------
  def _header(self) -> dict[str, Any]:
    return {"format": FORMAT, "kind": self.kind, "task_names": list(self.task_names),
            "length": self.length, "embed_dim": self.embed_dim, "rank": self.rank,
            "backbone_config": self.backbone_config, "metadata": self.metadata,
            "sha256": arrays_lib.sha256(self.arrays)}

  def save(self, path) -> epath.Path:
    """Writes `.safetensors` or `.npz` (by suffix) atomically, locally or on gs://."""
    path = paths.as_path(path)
    bad = arrays_lib.non_finite(self.arrays)
    if bad:
      raise ValueError(f"Refusing to save prompts with NaN or inf to {path}: "
                       f"{', '.join(bad)}.")
    header = json.dumps(self._header())
    if path.suffix == ".safetensors":
      write = lambda local: safetensors.numpy.save_file(self.arrays, local,
                                                        metadata={"mpt_jax": header})
    elif path.suffix == ".npz":
      write = lambda local: np.savez(local, **self.arrays,
                                     **{_METADATA_KEY: np.array(header)})
    else:
      raise ValueError(f"{path}: a prompt file ends in .safetensors or .npz.")
    return paths.write_atomically(path, write)

  @classmethod
  def load(cls, path) -> "PromptSet":
    """Reads a prompt file, refusing one that is damaged, fails its checksum or holds
    NaN or inf; every error names the file."""
    path = paths.as_path(path)
    if not path.is_file():
      raise FileNotFoundError(f"Prompt file {path} does not exist.")
    if path.suffix not in (".safetensors", ".npz"):
      raise PromptFileError(f"{path}: a prompt file ends in .safetensors or .npz.")
    try:
      arrays, header = _read(path)
    except (OSError, ValueError, zipfile.BadZipFile, safetensors.SafetensorError) as e:
      raise PromptFileError(f"Prompt file {path} cannot be read ({type(e).__name__}: {e}); "
                            "it may be truncated or damaged. Copy it again, or use an "
                            "earlier prompts/step_N.safetensors of its run.") from e
    if header is None:
      raise PromptFileError(f"{path} is not an mpt_jax prompt file (no metadata). For a "
                            "PEFT adapter pass its directory to load_prompts.")
    facts = json.loads(header)
    if facts.get("format") != FORMAT:
      raise PromptFileError(f"{path} has format {facts.get('format')!r}; expected {FORMAT}.")
    if "sha256" in facts and arrays_lib.sha256(arrays) != facts["sha256"]:
      raise PromptFileError(f"Prompt file {path} is damaged: its arrays differ from the "
                            "SHA-256 recorded when it was saved. Copy it again, or use an "
                            "earlier prompts/step_N.safetensors of its run.")
    bad = arrays_lib.non_finite(arrays)
    if bad:
      raise PromptFileError(f"Prompt file {path} holds NaN or inf in {', '.join(bad)}: it "
                            "comes from a run that diverged. Use an earlier "
                            "prompts/step_N.safetensors of that run.")
    try:
      return cls(kind=facts["kind"], arrays=arrays, task_names=facts["task_names"],
                 backbone_config=facts.get("backbone_config"),
                 metadata=facts.get("metadata") or {})
    except ValueError as e:
      raise PromptFileError(f"Prompt file {path}: {e}") from e


def _read(path: epath.Path) -> tuple[dict[str, np.ndarray], Optional[str]]:
  """(arrays, the JSON header or None) of a .safetensors or .npz prompt file."""
  if path.suffix == ".safetensors":
    with paths.local_copy(path) as local:
      with safetensors.safe_open(local, framework="numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, (f.metadata() or {}).get("mpt_jax")
  with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as data:
    arrays = {k: data[k] for k in data.files}
  header = arrays.pop(_METADATA_KEY, None)
  return arrays, None if header is None else str(header)
