"""Meshes of 8 simulated CPU devices and two jax.distributed processes give the same
loss and prompt as one device, and the same predictions; SIGTERM to one host makes both
save at one step."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import mpt_jax
from mpt_jax import infer as infer_lib
from tests import helpers

SCRIPT = os.path.join(os.path.dirname(__file__), "distributed_run.py")


def _run(config, timeout=600):
  return subprocess.Popen([sys.executable, SCRIPT, json.dumps(config)], cwd=helpers.ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process, timeout=600):
  output, _ = process.communicate(timeout=timeout)
  assert process.returncode == 0, output[-4000:]
  return output


def _losses(model_dir):
  return np.array([row["loss"] for row in helpers.logged(model_dir)])


def _prompts(model_dir):
  return mpt_jax.load_prompts(model_dir / "prompts.safetensors").merged()


@pytest.mark.xdist_group("subprocesses")
def test_meshes_match_one_device(tmp_path, tiny_backbone_dir, toy_run):
  # On 2x4, a bank of two seeds (each run's rows split over 'data'): its seed-0 run is
  # run "one" on 8 devices.
  runs = {"one": dict(use_devices=1), "4x2": dict(mesh_shape=[4, 2]),
          "2x4": dict(mesh_shape=[2, 4], bank_seeds=[0, 1])}
  # Every TPU-scale option at once (remat, scanned stacks, the embed dimension of
  # activations and parameters split over 'model' and 'data') against one plain device.
  # Without dropout: a scan draws each layer's dropout mask from another key.
  scale = {"one_no_dropout": dict(use_devices=1),
           "scale": dict(mesh_shape=[2, 4], axis_rules=[2, 2],
                         model=dict(remat_policy="full", scan_layers=True))}
  config = {"devices": 8, "backbone": str(tiny_backbone_dir),
            "runs": [dict(model_dir=str(tmp_path / name), dropout_rate=0.1, **run)
                     for name, run in runs.items()] +
                    [dict(model_dir=str(tmp_path / name), dropout_rate=0.0, **run)
                     for name, run in scale.items()],
            "infer": _infer_spec(toy_run, tmp_path / "mesh.jsonl", mesh_shape=[2, 4])}
  _finish(_run(config))
  _assert_one_devices_predictions(toy_run, tiny_backbone_dir, tmp_path / "mesh.jsonl")
  for name, reference in (("2x4/seed0", "one"), ("4x2", "one"), ("scale", "one_no_dropout")):
    np.testing.assert_allclose(_losses(tmp_path / name), _losses(tmp_path / reference),
                               rtol=2e-5)
    np.testing.assert_allclose(_prompts(tmp_path / name), _prompts(tmp_path / reference),
                               rtol=1e-4, atol=1e-5)
  assert not np.allclose(_losses(tmp_path / "2x4" / "seed1"), _losses(tmp_path / "one"))


def _infer_spec(toy_run, output, **extra):
  """The toy run's prompts predicted on the validation split, after the trainings."""
  return {"output": str(output), "prompts": str(toy_run[0]), **extra}


def _assert_one_devices_predictions(toy_run, backbone, path):
  """The predictions in `path` are those of infer() on one device."""
  one = path.parent / "one_device.jsonl"
  if not one.exists():
    infer_lib.infer(str(one), prompts=str(toy_run[0]), backbone=str(backbone),
                    task_feature_lengths=helpers.TOY_LENGTHS, batch_size=8)
  read = lambda p: [json.loads(line) for line in p.read_text().splitlines()]
  expected, found = read(one), read(path)
  assert len(expected) == 48
  assert [r["prediction"] for r in found] == [r["prediction"] for r in expected]
  np.testing.assert_allclose([r["score"] for r in found], [r["score"] for r in expected],
                             rtol=1e-5)


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.mark.xdist_group("subprocesses")
def test_two_processes_match_one(tmp_path, tiny_backbone_dir, toy_run):
  # Banks of two seeds: each host builds its rows of both runs' batches.
  single = {"devices": 4, "backbone": str(tiny_backbone_dir),
            "runs": [dict(model_dir=str(tmp_path / "single"), num_input_shards=2,
                          bank_seeds=[0, 1])]}
  reference = _run(single)
  coordinator = f"localhost:{_free_port()}"
  workers = [_run({"devices": 2, "backbone": str(tiny_backbone_dir), "coordinator": coordinator,
                   "process_count": 2, "process_index": index,
                   "runs": [dict(model_dir=str(tmp_path / "multi"), bank_seeds=[0, 1])],
                   "infer": _infer_spec(toy_run, tmp_path / "two.jsonl")})
             for index in range(2)]
  outputs = [_finish(p) for p in [reference, *workers]]
  assert "done 0 4" in outputs[1] and "done 1 4" in outputs[2]
  for seed in ("seed0", "seed1"):
    multi, single = tmp_path / "multi" / seed, tmp_path / "single" / seed
    np.testing.assert_allclose(_losses(multi), _losses(single), rtol=2e-5)
    np.testing.assert_allclose(_prompts(multi), _prompts(single), rtol=1e-4, atol=1e-5)
    assert helpers.logged(multi, "eval") == helpers.logged(single, "eval")
  _assert_one_devices_predictions(toy_run, tiny_backbone_dir, tmp_path / "two.jsonl")


@pytest.mark.xdist_group("subprocesses")
def test_sigterm_to_one_host_makes_every_host_save_the_same_step(tmp_path, tiny_backbone_dir):
  coordinator = f"localhost:{_free_port()}"
  model_dir = tmp_path / "preempted"
  workers = [_run({"devices": 2, "backbone": str(tiny_backbone_dir), "coordinator": coordinator,
                   "process_count": 2, "process_index": index,
                   "runs": [dict(model_dir=str(model_dir), train_steps=100000)]})
             for index in range(2)]
  deadline = time.time() + 300
  log = model_dir / "train.jsonl"
  while time.time() < deadline and not (log.exists() and
                                        len(log.read_text().splitlines()) >= 5):
    assert all(w.poll() is None for w in workers)
    time.sleep(0.05)
  workers[1].send_signal(signal.SIGTERM)  # the preempted host is not the one that writes
  outputs = [w.communicate(timeout=300)[0] for w in workers]
  assert [w.returncode for w in workers] == [75, 75], outputs[0][-3000:] + outputs[1][-3000:]
  steps = [int(re.search(rf"preempted {i} (\d+)", out).group(1))
           for i, out in enumerate(outputs)]
  assert steps[0] == steps[1] >= 5
  assert (model_dir / "checkpoints" / f"checkpoint_{steps[0]}" / "commit_success.txt").exists()
