"""One writer per run directory: `MODEL_DIR/run.lock` names the process that holds it
(host, pid, start time, command) and a heartbeat it refreshes while it runs.

A second writer is refused with the holder's details, so two jobs on one MODEL_DIR
never silently overwrite each other. A lock is stale, and taken over with a warning,
when its process is gone (same host, dead pid) or its heartbeat is older than
`stale_after` seconds (another host that died). Locally the lock file appears whole
or not at all (a hard link of a finished file); on a bucket it is written and read
back, which narrows but cannot close the race.
"""

import contextlib
import dataclasses
import json
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from typing import Iterator, Optional

import jax
from jax.experimental import multihost_utils
import numpy as np

from mpt_jax import paths

LOCK_FILE = "run.lock"


class RunLockedError(RuntimeError):
  """Another live process holds the run directory."""


@dataclasses.dataclass
class Holder:
  host: str
  pid: int
  started: float
  heartbeat: float
  command: str

  @classmethod
  def this_process(cls) -> "Holder":
    now = time.time()
    return cls(socket.gethostname(), os.getpid(), now, now, " ".join(sys.orig_argv))

  def describe(self) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
    return (f"pid {self.pid} on host {self.host} (started {started}, last heartbeat "
            f"{time.time() - self.heartbeat:.0f} s ago, command: {self.command})")


def _process_is_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # alive, another user's
    return True
  return True


class RunLock:
  """Holds `directory/run.lock` while the run writes; use as a context manager."""

  def __init__(self, directory, heartbeat_seconds: float = 60.0,
               stale_after: float = 600.0):
    self.directory = paths.as_path(directory)
    self.path = self.directory / LOCK_FILE
    self.heartbeat_seconds = heartbeat_seconds
    self.stale_after = stale_after
    self.holder = Holder.this_process()
    self._stop = threading.Event()
    self._thread: Optional[threading.Thread] = None

  def __enter__(self) -> "RunLock":
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()

  def acquire(self) -> None:
    self.directory.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # a stale lock removed, then a race lost, at most
      if self._create():
        self._thread = threading.Thread(target=self._beat, daemon=True,
                                        name="mpt_jax run lock heartbeat")
        self._thread.start()
        return
      holder = self._read()
      reason = self._stale_reason(holder)
      if reason is None:
        raise RunLockedError(
            f"{self.directory} is in use by {holder.describe()}. Two writers would "
            "overwrite each other's checkpoints: wait for it to finish or stop it. A "
            f"lock whose process is gone is taken over (on another host once its "
            f"heartbeat is {self.stale_after:.0f} s old); to force it, delete {self.path}.")
      logging.warning("Taking over the lock on %s: %s.", self.directory, reason)
      self.path.unlink(missing_ok=True)
    raise RunLockedError(f"Could not lock {self.directory}: other processes keep taking "
                         f"{self.path}.")

  def release(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
      self._thread = None
      holder = self._read()
      if holder is not None and (holder.host, holder.pid) == (self.holder.host,
                                                              self.holder.pid):
        self.path.unlink(missing_ok=True)

  def _stale_reason(self, holder: Optional[Holder]) -> Optional[str]:
    if holder is None:
      return f"{self.path} is unreadable"
    if holder.host == socket.gethostname() and not _process_is_alive(holder.pid):
      return f"its holder, pid {holder.pid} on this host, is gone"
    age = time.time() - holder.heartbeat
    if age > self.stale_after:
      return f"its holder's heartbeat ({holder.describe()}) is {age:.0f} s old"
    return None

  def _content(self) -> str:
    return json.dumps(dataclasses.asdict(self.holder), indent=2)

  def _create(self) -> bool:
    """Creates the lock file with our content unless it exists; whether we did."""
    if paths.is_remote(self.path):
      if self.path.exists():
        return False
      self.path.write_text(self._content())
      holder = self._read()
      return holder is not None and holder.pid == self.holder.pid and \
          holder.host == self.holder.host
    with tempfile.NamedTemporaryFile("w", dir=os.fspath(self.directory), prefix=".lock-",
                                     delete=False) as staged:
      staged.write(self._content())
    try:
      os.link(staged.name, os.fspath(self.path))  # fails if the lock exists
      return True
    except FileExistsError:
      return False
    finally:
      os.unlink(staged.name)

  def _read(self) -> Optional[Holder]:
    try:
      return Holder(**json.loads(self.path.read_text()))
    except (FileNotFoundError, ValueError, TypeError):
      return None

  def _beat(self) -> None:
    while not self._stop.wait(self.heartbeat_seconds):
      current = self._read()
      if current is None or (current.host, current.pid) != (self.holder.host,
                                                            self.holder.pid):
        logging.error("The lock on %s was taken over by %s while this run held it.",
                      self.directory, current.describe() if current else "someone")
        return
      self.holder.heartbeat = time.time()
      paths.write_atomically(self.path,
                             lambda local: paths.as_path(local).write_text(self._content()))


@contextlib.contextmanager
def held(directory) -> Iterator[None]:
  """The run's lock for the whole job: process 0 takes it, every process learns whether
  it did (a refusal stops every host, not just the first)."""
  lock = RunLock(directory) if jax.process_index() == 0 else None
  error = None
  if lock is not None:
    try:
      lock.acquire()
    except RunLockedError as e:
      error = e
  if jax.process_count() > 1:
    locked = multihost_utils.broadcast_one_to_all(np.int32(error is None))
    if not locked and error is None:
      error = RunLockedError(f"Process 0 could not lock {directory}; see its log.")
  if error is not None:
    raise error
  try:
    yield
  finally:
    if lock is not None:
      lock.release()
