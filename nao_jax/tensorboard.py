"""TensorBoard scalars of every job, under ``workdir/tb/<job>`` (tensorboardX:
event files without TensorFlow), written by process 0 only.

  with tensorboard.writer(workdir, "search") as tb:
    tb.scalars(step, {"search/best_score": 0.9})

On other processes the writer drops everything, so callers need no checks. The
event file is created at the first scalar: a job that writes none leaves no file.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import jax


class Writer:
  """Scalar series of one job; ``close`` (or the ``with`` block's end) flushes them."""

  def __init__(self, directory: str | None):
    self.directory = directory
    self._summary = None

  def scalars(self, step: int, values: Mapping[str, Any]) -> None:
    """Writes each ``name: value`` at ``step``."""
    if self.directory is None:
      return
    if self._summary is None:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._summary = SummaryWriter(self.directory)
    for name, value in values.items():
      self._summary.add_scalar(name, float(value), int(step))

  def close(self) -> None:
    if self._summary is not None:
      self._summary.close()
      self._summary = None
    self.directory = None  # Nothing more after close.

  def __enter__(self) -> "Writer":
    return self

  def __exit__(self, *exc_info: Any) -> None:
    self.close()


def writer(workdir: str, job: str) -> Writer:
  """The writer of ``workdir/tb/<job>`` (a no-op writer on processes other than 0)."""
  return Writer(os.path.join(workdir, "tb", job) if jax.process_index() == 0 else None)
