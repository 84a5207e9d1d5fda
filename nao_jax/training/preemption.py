"""SIGTERM as a request to stop: the training loops save a checkpoint and raise
``Preempted`` instead of dying mid-step (spot VMs, SLURM, ``kill``)."""

from __future__ import annotations

import signal
import threading


class Preempted(Exception):
  """Training stopped on SIGTERM after saving a checkpoint; rerun to resume."""


class SigtermFlag:
  """Catches SIGTERM from creation until ``restore()``: truthy once one arrived.

  Signal handlers can only be set from the main thread; elsewhere (a trial's
  thread) nothing is caught and the flag stays false. ``in_main`` says which.
  """

  def __init__(self):
    self.raised = False
    self.in_main = threading.current_thread() is threading.main_thread()
    self._previous = (signal.signal(signal.SIGTERM, self._catch) if self.in_main else None)

  def _catch(self, signum, frame) -> None:
    del signum, frame
    self.raised = True

  def __bool__(self) -> bool:
    return self.raised

  def restore(self) -> None:
    """Puts back the handler that was there before."""
    if self.in_main:
      signal.signal(signal.SIGTERM, self._previous)
