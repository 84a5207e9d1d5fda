"""TensorBoard scalars of every job, under ``workdir/tb/<job>`` (tensorboardX:
event files without TensorFlow), written by process 0 only.

  with tensorboard.writer(workdir, "search") as tb:
    tb.scalars(step, {"search/best_score": 0.9})

On other processes the writer drops everything, so callers need no checks. The
event file is created at the first scalar: a job that writes none leaves no file.
A workdir on an object store (``gs://``, any ``etils.epath`` path) is written
through a local staging directory whose event files are copied there at most
every ``UPLOAD_SECONDS`` and at ``close`` (no cloud SDK needed beyond epath's).
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any, Mapping

from etils import epath
import jax

UPLOAD_SECONDS = 60.0


class Writer:
  """Scalar series of one job; ``close`` (or the ``with`` block's end) flushes them."""

  def __init__(self, directory: str | None):
    self.directory = directory
    self._summary = None
    self._staging = None  # Local directory mirrored to a remote ``directory``.
    self._uploaded = 0.0

  def scalars(self, step: int, values: Mapping[str, Any]) -> None:
    """Writes each ``name: value`` at ``step``."""
    if self.directory is None:
      return
    if self._summary is None:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      local = self.directory
      if "://" in self.directory:
        self._staging = local = tempfile.mkdtemp(prefix="nao_jax_tb_")
        self._uploaded = time.time()
      self._summary = SummaryWriter(local)
    for name, value in values.items():
      self._summary.add_scalar(name, float(value), int(step))
    if self._staging and time.time() - self._uploaded > UPLOAD_SECONDS:
      self._summary.flush()
      self._upload()

  def _upload(self) -> None:
    """Copies the staged event files to the remote directory."""
    target = epath.Path(self.directory)
    target.mkdir(parents=True, exist_ok=True)
    for name in os.listdir(self._staging):
      with open(os.path.join(self._staging, name), "rb") as f:
        (target / name).write_bytes(f.read())
    self._uploaded = time.time()

  def close(self) -> None:
    if self._summary is not None:
      self._summary.close()
      self._summary = None
      if self._staging:
        self._upload()
    self.directory = None  # Nothing more after close.

  def __enter__(self) -> "Writer":
    return self

  def __exit__(self, *exc_info: Any) -> None:
    self.close()


def writer(workdir: str, job: str) -> Writer:
  """The writer of ``workdir/tb/<job>`` (a no-op writer on processes other than 0)."""
  return Writer(os.path.join(workdir, "tb", job) if jax.process_index() == 0 else None)
