"""The layout of a run's MODEL_DIR, in one place: what train writes, and where eval
and the pipeline find it."""

from etils import epath

from mpt_jax import paths


class ModelDir:
  """Paths inside one run's MODEL_DIR."""

  def __init__(self, path: paths.PathLike):
    self.path = paths.as_path(path)
    self.config_gin = self.path / "config.gin"
    self.tasks_json = self.path / "tasks.json"  # the task list (hence ids) and backbone
    self.checkpoints = self.path / "checkpoints"
    self.final_prompts = self.path / "prompts.safetensors"  # written last: run complete
    self.best_prompts = self.path / "best" / "prompts.safetensors"
    self.best_json = self.path / "best.json"
    self.eval_results = self.path / "eval" / "results.json"  # mpt_jax.eval's, of this run
    self.failed_json = self.path / "failed.json"  # a bank's run that diverged, and why

  def __str__(self) -> str:
    return str(self.path)

  def step_prompts(self, step: int) -> epath.Path:
    return self.path / "prompts" / f"step_{step}.safetensors"

  def prompts_to_evaluate(self) -> epath.Path:
    """The best dev prompt if the run kept one, else its final prompt."""
    return self.best_prompts if self.best_prompts.is_file() else self.final_prompts


def resolve_prompts(path: paths.PathLike) -> tuple[epath.Path, epath.Path]:
  """(prompts, where their eval results go) for a prompt file, a PEFT adapter
  directory or a run's MODEL_DIR (its best, else its final prompt)."""
  path = paths.as_path(path)
  run = ModelDir(path)
  if path.is_dir() and run.prompts_to_evaluate().is_file():
    return run.prompts_to_evaluate(), run.eval_results
  if run.tasks_json.is_file():
    raise FileNotFoundError(f"The run {path} has no prompt yet (no best/ or final "
                            "prompts.safetensors): let it finish, or name one of its "
                            "prompts/step_N.safetensors.")
  if not path.exists():
    raise FileNotFoundError(f"Prompts {path} do not exist: pass a prompt file, a PEFT "
                            "adapter directory or a run's MODEL_DIR.")
  return path, path.parent / "eval" / "results.json"
