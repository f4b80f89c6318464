"""One writer per run directory: the lock names its holder, refuses a second writer,
keeps a heartbeat, and is taken over when its holder is gone or silent."""

import json
import logging
import os
import socket
import subprocess
import sys
import time

import pytest

from mpt_jax.runtime import run_lock


def _write_lock(directory, **fields):
  holder = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
            "heartbeat": time.time(), "command": "python -m mpt_jax.train ...", **fields}
  (directory / run_lock.LOCK_FILE).write_text(json.dumps(holder))


def _dead_pid() -> int:
  process = subprocess.Popen([sys.executable, "-c", "pass"])
  process.wait()
  return process.pid


def test_the_lock_names_this_process_and_is_gone_after_release(tmp_path):
  with run_lock.RunLock(tmp_path / "run") as lock:
    holder = json.loads(lock.path.read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    assert "pytest" in holder["command"] or "python" in holder["command"]
  assert not (tmp_path / "run" / run_lock.LOCK_FILE).exists()


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
  _write_lock(tmp_path, pid=os.getppid(), command="python -m mpt_jax.train --gin_file=x.gin")
  before = (tmp_path / run_lock.LOCK_FILE).read_bytes()
  with pytest.raises(run_lock.RunLockedError,
                     match=rf"{tmp_path} is in use by pid {os.getppid()} on host "
                           rf"{socket.gethostname()} .*--gin_file=x.gin"):
    run_lock.RunLock(tmp_path).acquire()
  assert (tmp_path / run_lock.LOCK_FILE).read_bytes() == before


@pytest.mark.parametrize("stale, reason", [
    (dict(pid="dead"), "is gone"),
    (dict(host="another-host", heartbeat=time.time() - 3600), "heartbeat"),
])
def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path, caplog, stale, reason):
  if stale.get("pid") == "dead":
    stale = {**stale, "pid": _dead_pid()}
  _write_lock(tmp_path, **stale)
  with caplog.at_level(logging.WARNING):
    with run_lock.RunLock(tmp_path, stale_after=600) as lock:
      assert json.loads(lock.path.read_text())["pid"] == os.getpid()
  assert "Taking over the lock" in caplog.text and reason in caplog.text


def test_a_live_holder_on_another_host_is_respected_until_its_heartbeat_stops(tmp_path):
  _write_lock(tmp_path, host="another-host", pid=1, heartbeat=time.time() - 30)
  with pytest.raises(run_lock.RunLockedError, match="another-host"):
    run_lock.RunLock(tmp_path, stale_after=600).acquire()
  with run_lock.RunLock(tmp_path, stale_after=10):  # 30 s of silence: stale
    pass


def test_the_heartbeat_is_refreshed_while_the_lock_is_held(tmp_path):
  with run_lock.RunLock(tmp_path, heartbeat_seconds=0.05) as lock:
    first = json.loads(lock.path.read_text())["heartbeat"]
    deadline = time.time() + 10
    while json.loads(lock.path.read_text())["heartbeat"] == first and time.time() < deadline:
      time.sleep(0.02)
    assert json.loads(lock.path.read_text())["heartbeat"] > first
