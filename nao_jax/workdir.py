"""A job's workdir before the job starts: created, locked for one process, and a
resume checked against the settings recorded there.

``main`` calls, in this order and before anything is written:

1. ``create(workdir)``: the directory exists (made if missing) and is writable;
   a path that is a file, lies under a file or is read-only raises ``WorkdirError``.
2. ``lock(workdir)``: one process per workdir. The lock is an OS file lock on
   ``workdir/.lock`` (``filelock``), released by the kernel when its process
   ends however it ends, so a killed run never blocks its resume; the holder's
   pid is in ``workdir/.lock.pid`` for the error a second process gets.
3. ``check_resume(config, workdir)``: if ``config.json`` is there, every
   setting must equal the recorded one but those in ``MAY_CHANGE`` and the
   sections of strategies the run does not use (they do not alter results);
   otherwise ``ConfigError`` lists the differences.

Only then is ``config.json`` (re)written. Paths with a scheme (``gs://``) are
not locked: a file lock needs a local filesystem. In a multi-process job,
process 0 locks the (shared) workdir for every process.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Iterator

from etils import epath
import filelock
import ml_collections

from nao_jax import atomic
from nao_jax import configuration
from nao_jax import strategies

# Settings a resume may change: where data and files are, how much is logged,
# how many trials run at once, how far a search goes.
MAY_CHANGE = ("budget", "executor", "evaluator.path", "evaluator.seconds_per_query",
              "data.data_dir", "data.download", "supernet.ckpt_every_steps",
              "supernet.log_every_steps", "darts.ckpt_every_steps", "darts.table_path",
              "search.rerank_top", "final.enabled", "train.log_every_steps",
              "rerank.train.log_every_steps", "final.train.log_every_steps",
              "child.train.log_every_steps")


class WorkdirError(ValueError):
  """The workdir cannot be used, or what it records (history, checkpoints) is
  damaged or belongs to another run; the message names the problem and the fix."""


def _local(workdir: str) -> bool:
  return "://" not in workdir


def create(workdir: str) -> None:
  """Makes ``workdir`` if missing and checks that files can be written there (a
  ``gs://`` workdir: made, its permissions found by the first write)."""
  if not _local(workdir):
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    return
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test.{os.getpid()}")
    with open(probe, "w"):
      pass
    os.remove(probe)
  except FileExistsError:
    raise WorkdirError(f"--workdir={workdir} is a file, not a directory; pass a directory "
                       "(created if missing).") from None
  except OSError as e:
    raise WorkdirError(f"--workdir={workdir}: cannot write there ({e.strerror}: "
                       f"{e.filename}); pass a directory you can write.") from None


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[None]:
  """Holds ``workdir``'s lock while the block runs; ``WorkdirError`` naming the
  holder's pid if another process has it. Process 0 of a multi-process job
  holds it for all of them."""
  if not _local(workdir) or not atomic.is_writer():
    yield
    return
  pid_path = os.path.join(workdir, ".lock.pid")
  file_lock = filelock.FileLock(os.path.join(workdir, ".lock"), timeout=0)
  try:
    file_lock.acquire()
  except filelock.Timeout:
    try:
      with open(pid_path) as f:
        holder = f"process {f.read().strip()}"
    except OSError:
      holder = "another process"
    raise WorkdirError(f"--workdir={workdir} is in use by {holder}; wait for it to end, stop "
                       "it, or pass another --workdir.") from None
  try:
    with open(pid_path, "w") as f:
      f.write(f"{os.getpid()}\n")
    yield
  finally:
    file_lock.release()


def _flatten(settings: Any, prefix: str = "") -> dict[str, Any]:
  if not isinstance(settings, dict):
    return {prefix: settings}
  flat = {}
  for key, value in settings.items():
    flat.update(_flatten(value, f"{prefix}.{key}" if prefix else key))
  return flat


def _may_change(field: str, strategy: Any) -> bool:
  """Whether ``field`` may differ on a resume: it is in ``MAY_CHANGE``, or it is a
  setting of a strategy other than the run's (``config.<name>``, unused; DARTS's
  section too)."""
  first = field.split(".")[0]
  if first != strategy and (first in strategies.names() or first == "darts"):
    return True
  return any(field == safe or field.startswith(safe + ".") for safe in MAY_CHANGE)


def check_resume(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Refuses (``ConfigError``) a config whose settings differ from those recorded
  in ``workdir/config.json`` but for ``MAY_CHANGE``; no-op for a new workdir."""
  path = epath.Path(workdir) / "config.json"
  if not path.exists():
    return
  try:
    recorded = _flatten(json.loads(path.read_text()))
  except (OSError, ValueError) as e:
    raise WorkdirError(f"{path} is unreadable ({e}); it records the run in this workdir: "
                       "restore it or pass a new --workdir.") from None
  current = _flatten(json.loads(config.to_json_best_effort()))
  differences = [f"{field}: {recorded.get(field, '(absent)')!r} -> "
                 f"{current.get(field, '(absent)')!r}"
                 for field in sorted(set(recorded) | set(current))
                 if not _may_change(field, current.get("strategy"))
                 and recorded.get(field) != current.get(field)]
  if differences:
    shown = "; ".join(differences[:8]) + ("; ..." if len(differences) > 8 else "")
    raise configuration.ConfigError(
        "", f"{workdir} holds a run with other settings ({shown}). Rerun with the recorded "
        f"settings ({path}) to resume, or pass a new --workdir; only "
        f"{', '.join(MAY_CHANGE)} may change on a resume.")
