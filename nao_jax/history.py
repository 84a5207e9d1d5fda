"""``workdir/history.jsonl``: one JSON line per evaluated architecture.

Lines are appended, flushed and fsynced one at a time, so a crash loses at most
the line being written. ``read`` detects a truncated or corrupt *last* line
(the only one a crash can damage), moves it to ``history.jsonl.corrupt`` and
truncates the file to the intact lines; a damaged line elsewhere means the
file was edited, and raises a ``ValueError`` naming the line.

A record holds: ``index`` (0-based evaluation number), ``round``, ``hash``,
``arch`` (the space's JSON), ``string``, ``tokens``, ``score`` (search
metric; null for a failed evaluation, which also has ``failed: true`` and its
``error``), ``report`` (reported metrics), ``cost``, ``time`` (unix seconds).
Evaluations run at once finish in any order, so lines are in the order they
finished: ``read`` returns them so, each index once.
"""

from __future__ import annotations

import json
import os
from typing import Any

from absl import logging
from etils import epath

from nao_jax import atomic
from nao_jax.workdir import WorkdirError

REQUIRED_FIELDS = ("index", "round", "hash", "tokens", "score", "report", "cost")


def _parse(line: bytes, number: int, indices: set[int]) -> dict[str, Any]:
  record = json.loads(line)
  if not isinstance(record, dict) or any(f not in record for f in REQUIRED_FIELDS):
    raise ValueError(f"line {number} lacks one of the fields {REQUIRED_FIELDS}")
  index = record["index"]
  if not isinstance(index, int) or index < 0 or index in indices:
    raise ValueError(f"line {number} has index {index!r}: not a new evaluation number")
  indices.add(index)
  return record


def _is_local(path: str) -> bool:
  return "://" not in path


def read(path: str) -> list[dict[str, Any]]:
  """The records of ``path`` (``[]`` if missing), repairing a damaged last line."""
  file = epath.Path(path)
  if not file.exists():
    return []
  data = file.read_bytes()
  lines = data.split(b"\n")
  complete, tail = lines[:-1], lines[-1]  # tail: text after the last newline.
  records, good_bytes, indices = [], 0, set()
  for number, line in enumerate(complete, start=1):
    try:
      records.append(_parse(line, number, indices))
    except ValueError as e:  # json.JSONDecodeError is a ValueError.
      if number < len(complete) or tail:
        raise WorkdirError(
            f"{path}: line {number} is corrupt ({e}) and is not the last line, so it was not "
            f"written by an interrupted append. Restore the file or start a new workdir.") from None
      tail = line + b"\n"
      break
    good_bytes += len(line) + 1
  if tail and atomic.is_writer():
    _quarantine(path, data, good_bytes)
  return records


def _quarantine(path: str, data: bytes, good_bytes: int) -> None:
  """Appends the damaged last line of ``data`` (the file's bytes) to ``path.corrupt``
  and cuts ``path`` to its first ``good_bytes``."""
  damaged = data[good_bytes:]
  damaged = damaged if damaged.endswith(b"\n") else damaged + b"\n"
  if _is_local(path):
    with open(path + ".corrupt", "ab") as f:
      f.write(damaged)
      f.flush()
      os.fsync(f.fileno())
    with open(path, "r+b") as f:
      f.truncate(good_bytes)
      f.flush()
      os.fsync(f.fileno())
  else:  # Object stores have no append or truncate: rewrite both objects.
    corrupt = epath.Path(path + ".corrupt")
    atomic.write_bytes(corrupt, (corrupt.read_bytes() if corrupt.exists() else b"") + damaged)
    atomic.write_bytes(path, data[:good_bytes])
  logging.warning("%s: the last line was truncated or corrupt (an interrupted write); moved "
                  "it to %s.corrupt and kept the %d bytes before it.", path, path, good_bytes)
  print(f"warning: {path}: damaged last line moved to {path}.corrupt; it will be re-evaluated.")


class Writer:
  """Appends records to ``path``; each is durable when ``append`` returns.

  A local file is appended to, flushed and fsynced. An object store (``gs://``)
  has no append: the whole file is rewritten atomically with each record (a
  search writes thousands of lines at most). On a multi-process run only process
  0 writes (``atomic.is_writer``).
  """

  def __init__(self, path: str):
    self.path = path
    self._file = None
    self._lines = None
    if not atomic.is_writer():
      return
    if _is_local(path):
      self._file = open(path, "a", encoding="utf-8")
    else:
      file = epath.Path(path)
      self._lines = file.read_text() if file.exists() else ""

  def append(self, record: dict[str, Any]) -> None:
    line = json.dumps(record, sort_keys=True) + "\n"
    if self._file is not None:
      self._file.write(line)
      self._file.flush()
      os.fsync(self._file.fileno())
    elif self._lines is not None:
      self._lines += line
      atomic.write_text(self.path, self._lines)

  def close(self) -> None:
    if self._file is not None:
      self._file.close()

  def __enter__(self) -> "Writer":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
