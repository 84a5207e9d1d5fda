"""Atomic file writes for every record a job leaves in its workdir.

A file is written to ``<path>.tmp.<pid>`` and renamed over ``path``, so a reader
(or a crash) sees the old file or the new one, never half of one; the process id
in the temporary name keeps two writers from sharing one temporary file. Paths
go through ``etils.epath``, so ``gs://`` and the other paths it supports work.

In a multi-process job (``jax.distributed``) every process runs the same program
and reaches the same records; only process 0 writes them (``is_writer``), the
others' writes return without touching the filesystem.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any, Iterable

from etils import epath
import jax


def is_writer() -> bool:
  """True on the process that writes the job's records (process 0)."""
  return jax.process_index() == 0


def write_bytes(path: str | os.PathLike, data: bytes) -> str:
  """Replaces ``path`` with ``data`` atomically (process 0 only); returns ``path``."""
  if is_writer():
    target = epath.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / f"{target.name}.tmp.{os.getpid()}"
    temporary.write_bytes(data)
    temporary.replace(target)
  return os.fspath(path)


def write_text(path: str | os.PathLike, text: str) -> str:
  """Replaces ``path`` with ``text`` (UTF-8) atomically; returns ``path``."""
  return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any) -> str:
  """Replaces ``path`` with ``data`` as indented JSON (keys sorted)."""
  return write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> str:
  """Replaces ``path`` with one JSON line per record (keys sorted)."""
  return write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def write_figure(path: str | os.PathLike, figure: Any, dpi: int = 100) -> str:
  """Replaces ``path`` with a matplotlib ``figure`` rendered in the format its
  suffix names (``.png``, ``.pdf``, ...); returns ``path``."""
  buffer = io.BytesIO()
  figure.savefig(buffer, dpi=dpi, format=os.fspath(path).rsplit(".", 1)[-1])
  return write_bytes(path, buffer.getvalue())
