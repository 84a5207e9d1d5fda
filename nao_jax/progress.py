"""Progress bars with rate and ETA (tqdm) for the long phases: a search's
evaluations, supernet training and child training.

Shown only when stderr is a terminal, so logs and captured output keep just the
jobs' own lines; ``NAO_JAX_PROGRESS=1`` forces them on, ``=0`` off.
"""

from __future__ import annotations

import os
import sys

import tqdm

# No monitor thread: the bars are updated from the loops themselves.
tqdm.tqdm.monitor_interval = 0


def enabled() -> bool:
  forced = os.environ.get("NAO_JAX_PROGRESS", "")
  if forced in ("0", "1"):
    return forced == "1"
  return sys.stderr.isatty()


def bar(total: int, description: str, unit: str, initial: int = 0,
        show: bool = True) -> tqdm.tqdm:
  """A bar over ``total`` ``unit``s starting at ``initial`` (a resumed run); a
  disabled one (every call a no-op) unless ``show`` and ``enabled()`` (trials
  run in threads pass ``show=False``: their bars would interleave)."""
  return tqdm.tqdm(total=total, initial=initial, desc=description, unit=unit,
                   disable=not (show and enabled()), leave=False, dynamic_ncols=True)
