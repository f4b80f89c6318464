"""load_backbone on the local HuggingFace hub cache: a model's cache root loads the snapshot
refs/main names (else the newest), a hub id is looked up in $HF_HUB_CACHE / $HF_HOME/hub /
~/.cache/huggingface/hub, and a missing model says how to download it, without any network
access."""

import hashlib
import logging
import os
import shutil
import socket

import pytest

import mpt_jax
from tests import helpers

OLD, NEW = 1_600_000_000, 1_700_000_000  # snapshot mtimes
DOWNLOAD = "huggingface-cli download {} --include 'config.json' '*.safetensors*'"


@pytest.fixture(autouse=True)
def offline_with_no_cache_settings(monkeypatch):
  """Every test runs without network and sees only the cache it sets up itself."""
  def refuse(*args):
    raise AssertionError(f"network access to {args}")
  monkeypatch.setattr(socket.socket, "connect", refuse)
  for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
    monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def hf_t5_1_0():
  return mpt_jax.load_backbone(helpers.FIXTURES / "hf_t5_1_0")


@pytest.fixture
def expected(hf_t5_1_0, hf_t5_1_1):
  return {"hf_t5_1_0": hf_t5_1_0, "hf_t5_1_1": hf_t5_1_1}


def add_snapshot(root, commit, fixture, mtime):
  """FIXTURE's files laid out as huggingface_hub does: blobs linked from snapshots/COMMIT."""
  snapshot = root / "snapshots" / commit
  snapshot.mkdir(parents=True)
  (root / "blobs").mkdir(exist_ok=True)
  for file in sorted((helpers.FIXTURES / fixture).iterdir()):
    blob = root / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
    shutil.copyfile(file, blob)
    (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
  os.utime(snapshot, (mtime, mtime))


def cache_root(directory, refs_main=None):
  """models--org--tiny with T5 1.0 (older) and T5 1.1 (newer) snapshots."""
  root = directory / "models--org--tiny"
  add_snapshot(root, "a" * 40, "hf_t5_1_0", OLD)
  add_snapshot(root, "b" * 40, "hf_t5_1_1", NEW)
  if refs_main is not None:
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(refs_main)
  return root


@pytest.mark.parametrize("commit, fixture", [("a" * 40, "hf_t5_1_0"), ("b" * 40, "hf_t5_1_1")])
def test_a_cache_root_loads_the_snapshot_refs_main_names(tmp_path, expected, caplog, commit,
                                                          fixture):
  root = cache_root(tmp_path, refs_main=commit)
  with caplog.at_level(logging.INFO):
    loaded = mpt_jax.load_backbone(root)
  assert loaded.fingerprint == expected[fixture].fingerprint
  assert loaded.config == expected[fixture].config
  assert loaded.source == str(root)
  assert f"snapshot {commit} (refs/main)" in caplog.text


@pytest.mark.parametrize("refs_main", [None, "c" * 40])
def test_without_a_usable_refs_main_the_newest_snapshot_is_loaded(tmp_path, expected, caplog,
                                                                  refs_main):
  root = cache_root(tmp_path, refs_main=refs_main)
  with caplog.at_level(logging.INFO):
    assert mpt_jax.load_backbone(root).fingerprint == expected["hf_t5_1_1"].fingerprint
  assert f"snapshot {'b' * 40} (the newest" in caplog.text
  os.utime(root / "snapshots" / ("a" * 40), (NEW + 1, NEW + 1))
  assert mpt_jax.load_backbone(root).fingerprint == expected["hf_t5_1_0"].fingerprint


@pytest.mark.parametrize("variable, cache", [
    ("HF_HUB_CACHE", "cache"),
    ("HF_HOME", "home/hub"),
    ("HOME", "user/.cache/huggingface/hub"),
])
def test_a_hub_id_is_found_in_the_local_cache(tmp_path, monkeypatch, expected, variable,
                                              cache):
  cache_root(tmp_path / cache, refs_main="a" * 40)
  monkeypatch.setenv(variable, str(tmp_path / cache.split("/")[0]))
  monkeypatch.chdir(tmp_path)
  loaded = mpt_jax.load_backbone("org/tiny")
  assert loaded.fingerprint == expected["hf_t5_1_0"].fingerprint
  assert loaded.source == "org/tiny"


def test_hf_hub_cache_takes_precedence_over_hf_home(tmp_path, monkeypatch, expected):
  cache_root(tmp_path / "cache", refs_main="a" * 40)
  cache_root(tmp_path / "home" / "hub", refs_main="b" * 40)
  monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
  monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
  assert mpt_jax.load_backbone("org/tiny").fingerprint == expected["hf_t5_1_0"].fingerprint


def test_a_hub_id_without_a_local_copy_says_how_to_download_it(tmp_path, monkeypatch):
  monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
  with pytest.raises(FileNotFoundError) as error:
    mpt_jax.load_backbone("google/t5-v1_1-base")
  message = str(error.value)
  assert "no local copy of the HuggingFace hub id google/t5-v1_1-base exists" in message
  assert f"searched {tmp_path}/cache/models--google--t5-v1_1-base" in message
  assert DOWNLOAD.format("google/t5-v1_1-base") in message
  assert "`hf download google/t5-v1_1-base" in message
  assert "never downloads by itself" in message


@pytest.mark.parametrize("snapshots", [False, True])
def test_a_cache_root_without_snapshots_says_how_to_download_it(tmp_path, snapshots):
  root = tmp_path / "models--org--tiny"
  (root / "blobs").mkdir(parents=True)
  if snapshots:
    (root / "snapshots").mkdir()
  with pytest.raises(FileNotFoundError) as error:
    mpt_jax.load_backbone(root)
  assert f"{root} is a HuggingFace cache directory without any snapshot" in str(error.value)
  assert DOWNLOAD.format("org/tiny") in str(error.value)


def test_strings_that_are_not_hub_ids_keep_the_missing_path_error(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  with pytest.raises(FileNotFoundError, match=f"Backbone path {tmp_path}/no/such/dir does not"):
    mpt_jax.load_backbone("no/such/dir")


def test_existing_directories_shaped_like_hub_ids_or_cache_roots_load_as_they_are(
    tmp_path, monkeypatch, hf_t5_1_0):
  monkeypatch.chdir(helpers.FIXTURES.parent)
  loaded = mpt_jax.load_backbone("fixtures/hf_t5_1_0")
  assert loaded.source == str(helpers.FIXTURES / "hf_t5_1_0")
  assert loaded.fingerprint == hf_t5_1_0.fingerprint
  plain = shutil.copytree(helpers.FIXTURES / "hf_t5_1_0", tmp_path / "models--org--tiny")
  assert mpt_jax.load_backbone(plain).fingerprint == hf_t5_1_0.fingerprint
