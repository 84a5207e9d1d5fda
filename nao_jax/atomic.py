"""Atomic file writes for every record a job leaves in its workdir.

A file is written to ``<path>.tmp.<pid>`` and renamed over ``path``, so a reader
(or a crash) sees the old file or the new one, never half of one; the process id
in the temporary name keeps two writers from sharing one temporary file. Paths
go through ``etils.epath``, so ``gs://`` and the other paths it supports work.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable

from etils import epath


def write_text(path: str | os.PathLike, text: str) -> str:
  """Replaces ``path`` with ``text`` atomically; returns ``path`` as a string."""
  target = epath.Path(path)
  target.parent.mkdir(parents=True, exist_ok=True)
  temporary = target.parent / f"{target.name}.tmp.{os.getpid()}"
  temporary.write_text(text)
  temporary.replace(target)
  return os.fspath(path)


def write_json(path: str | os.PathLike, data: Any) -> str:
  """Replaces ``path`` with ``data`` as indented JSON (keys sorted)."""
  return write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> str:
  """Replaces ``path`` with one JSON line per record (keys sorted)."""
  return write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
