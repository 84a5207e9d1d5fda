"""Checkpoints of pytrees (train states, strategy states) in a workdir, via orbax.

All orbax use in nao_jax goes through this module, because orbax's API churns.
A checkpoint is a step number, a pytree of arrays and a JSON-serialisable
metadata dict. Orbax writes each step to a temporary directory and renames it
when complete, so a crash mid-save leaves the previous steps intact and the
half-written one invisible. Orbax's managers in one process share their
signalling (operation ids), so the trials that train at once in threads of one
process (``evaluators.child``) take turns: one lock serialises every orbax call.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from nao_jax.workdir import WorkdirError

_ORBAX = threading.Lock()


class Checkpointer:
  """Saves and restores numbered checkpoints under ``directory``.

  Attributes:
    directory: absolute path (or ``gs://`` URL) holding one subdirectory per step.
  """

  def __init__(self, directory: str, max_to_keep: int | None = 2):
    if "://" not in directory:
      directory = os.path.abspath(directory)
    self.directory = directory
    with _ORBAX:
      self._manager = ocp.CheckpointManager(
          directory,
          options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
          item_names=("state", "metadata"))

  def latest_step(self) -> int | None:
    """The newest complete step, or None if there is none."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, metadata: dict[str, Any] | None = None) -> None:
    """Writes ``state`` (a pytree of arrays/scalars) and ``metadata`` as ``step``
    and waits until it is on disk.

    On a multi-process run orbax writes only arrays global to all processes;
    process-local ones (a strategy's controller, equal on every process) are
    written from host memory instead."""
    if jax.process_count() > 1:
      state = jax.tree.map(
          lambda x: np.asarray(x) if isinstance(x, jax.Array) and x.is_fully_addressable
          else x, state)
    with _ORBAX:
      self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          metadata=ocp.args.JsonSave(metadata or {})), force=True)
      self._manager.wait_until_finished()

  def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
    """Restores ``step`` (default: the latest) into the structure of ``target``.

    Returns ``(state, metadata)``; numpy scalars come back as 0-d arrays. Raises
    ``FileNotFoundError`` if there is no checkpoint and ``WorkdirError`` (a
    ``ValueError``) naming the directory if it cannot be read (corrupt, or
    written for a different state structure).
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    target = jax.tree.map(lambda x: np.asarray(x) if isinstance(x, np.generic) else x, target)
    try:
      with _ORBAX:
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target),
            metadata=ocp.args.JsonRestore()))
    except Exception as e:  # orbax raises many types for unreadable data.
      raise WorkdirError(
          f"checkpoint step {step} in {self.directory} cannot be restored "
          f"({type(e).__name__}: {str(e)[:300]}); it is corrupt or was written by a "
          f"different config. Move it away to start afresh, or use the config "
          f"that wrote it.") from e
    return restored["state"], dict(restored["metadata"] or {})

  def close(self) -> None:
    with _ORBAX:
      self._manager.close()

  def __enter__(self) -> "Checkpointer":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
