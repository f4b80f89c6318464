"""The local HuggingFace hub cache: a hub id ('google/t5-v1_1-base') or a model's cache
root (.../models--google--t5-v1_1-base) names the snapshot directory holding its files.
Nothing is ever downloaded here: runs must not depend on the network, so the cache is
filled beforehand with `huggingface-cli download` (or `hf download`)."""

import logging
import os
import re

from etils import epath

from mpt_jax import paths
from mpt_jax.backbone import huggingface

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_PREFIX = "models--"


def is_hub_id(path: paths.PathLike) -> bool:
  """'org/name' given as a string; an existing local path of that form stays a path."""
  return isinstance(path, str) and bool(_HUB_ID.match(path)) and not os.path.exists(path)


def cache_dir() -> epath.Path:
  """The hub cache, found as huggingface_hub finds it."""
  home = os.environ.get("HF_HOME") or os.path.join(
      os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
  hub = (os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
         or os.path.join(home, "hub"))
  return paths.as_path(os.path.expanduser(hub))


def is_cache_root(path: epath.Path) -> bool:
  # A model directory that happens to be named models--* still loads as one.
  return (path.name.startswith(_PREFIX) and path.is_dir()
          and not (path / huggingface.CONFIG_FILE).is_file())


def resolve(path: paths.PathLike) -> tuple[str, epath.Path]:
  """(the backbone's source, the directory to read): a hub id or a cache root becomes its
  snapshot, with the hub id or the cache root as the source; other paths are unchanged."""
  if is_hub_id(path):
    root = cache_dir() / (_PREFIX + path.replace("/", "--"))
    if not root.is_dir():
      raise FileNotFoundError(
          f"{path!r} is not a local path, and no local copy of the HuggingFace hub id "
          f"{path} exists: searched {root} (the hub cache is $HF_HUB_CACHE, else "
          f"$HF_HOME/hub, else ~/.cache/huggingface/hub). {_download_hint(path)} and pass "
          f"{path!r} again, or pass the directory it was downloaded to. mpt_jax never "
          "downloads by itself.")
    return path, snapshot(root)
  path = paths.as_path(path)
  if is_cache_root(path):
    return str(path), snapshot(path)
  return str(path), path


def transformers_name(source: str):
  """What `from_pretrained` accepts for a backbone loaded from `source`: the hub id, a
  cache root's hub id, or a HuggingFace directory; None for anything else (a T5X
  checkpoint, a random backbone)."""
  if is_hub_id(source):
    return source
  path = paths.as_path(source)
  if is_cache_root(path):
    return _hub_id_of(path)
  return source if (path / huggingface.CONFIG_FILE).is_file() else None


def _hub_id_of(root: epath.Path) -> str:
  """'org/name' of a cache root models--org--name."""
  return "/".join(root.name.split("--")[1:])


def snapshot(root: epath.Path) -> epath.Path:
  """The snapshot refs/main names, else the most recently modified one."""
  snapshots = root / "snapshots"
  found = [p for p in snapshots.iterdir() if p.is_dir()] if snapshots.is_dir() else []
  if not found:
    raise FileNotFoundError(
        f"{root} is a HuggingFace cache directory without any snapshot: the model's files "
        f"were never (or only partly) downloaded. {_download_hint(_hub_id_of(root))}.")
  ref = root / "refs" / "main"
  commit = ref.read_text().strip() if ref.is_file() else ""
  if commit and (snapshots / commit).is_dir():
    chosen, reason = snapshots / commit, "refs/main"
  else:
    chosen = max(found, key=lambda p: (p.stat().mtime, p.name))
    reason = ("the newest; refs/main names no snapshot here" if commit
              else "the newest; there is no refs/main")
  logging.info("Backbone %s: snapshot %s (%s).", root, chosen.name, reason)
  return chosen


def _download_hint(repo_id: str) -> str:
  files = "--include 'config.json' '*.safetensors*'"
  return (f"Download it with `huggingface-cli download {repo_id} {files}` "
          f"(or `hf download {repo_id} {files}`)")
