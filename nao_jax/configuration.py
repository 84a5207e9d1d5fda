"""Config helpers shared by every job: the error type for bad settings, and the
resolved-config record written into the workdir."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Iterator

import ml_collections


class ConfigError(ValueError):
  """A config field holds a bad value; the message names the field and the fix."""


@contextlib.contextmanager
def section(field: str) -> Iterator[None]:
  """Re-raises a ``ValueError`` raised while reading ``config.<field>`` as a
  ``ConfigError`` that names the field."""
  try:
    yield
  except ConfigError:
    raise
  except ValueError as e:
    raise ConfigError(f"config.{field}: {e}") from e


def write_resolved(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Writes ``workdir/config.json`` atomically and returns its path."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, "config.json")
  temporary = path + ".tmp"
  with open(temporary, "w") as f:
    json.dump(json.loads(config.to_json_best_effort()), f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(temporary, path)
  return path
