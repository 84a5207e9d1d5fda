"""Config helpers shared by every job: the error type for bad settings, the one
way settings are checked, and the resolved-config record written into the workdir.

Every check names the field by its dotted path below ``config`` and says how to
fix it. Code that reads one section (a strategy its ``config.<name>``) names
fields relative to that section; ``section(name)`` around the call adds the prefix:

  with configuration.section("evolution"):
    configuration.check(config.evolution, [("tournament", t >= 1, "must be >= 1")])
  # ConfigError: config.evolution.tournament: must be >= 1 (got 0).
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Iterator, Sequence

import ml_collections
import numpy as np

from nao_jax import atomic


class ConfigError(ValueError):
  """A config field holds a bad value.

  Attributes:
    field: its dotted path below ``config`` ('' for the config as a whole).
    problem: what is wrong and the fix.
  """

  def __init__(self, field: str, problem: str):
    self.field, self.problem = field, problem
    super().__init__(f"config.{field}: {problem}" if field else f"config: {problem}")


@contextlib.contextmanager
def section(name: str) -> Iterator[None]:
  """Prefixes ``name`` to the field of a ``ConfigError`` raised inside, and turns a
  plain ``ValueError`` (whose message names the problem) into one for ``name``."""
  try:
    yield
  except ConfigError as e:
    raise ConfigError(f"{name}.{e.field}" if e.field else name, e.problem) from e
  except ValueError as e:
    raise ConfigError(name, str(e)) from e


def value(config: Any, field: str) -> Any:
  """``config.<field>`` for a dotted ``field``; None where a part is missing."""
  for part in field.split("."):
    if config is None or part not in config:
      return None
    config = config[part]
  return config


def check(config: Any, checks: Sequence[tuple[str, bool, str]]) -> None:
  """Raises ``ConfigError`` for the first ``(field, ok, fix)`` whose ``ok`` is false:
  ``config.<field>: <fix> (got <value>).``"""
  for field, ok, fix in checks:
    if not ok:
      raise ConfigError(field, f"{fix} (got {value(config, field)!r}).")


def positive_int(config: Any, field: str, minimum: int = 1) -> int:
  """``config.<field>`` as an int ``>= minimum``, else ``ConfigError``."""
  got = value(config, field)
  ok = not isinstance(got, bool) and isinstance(got, (int, np.integer)) and got >= minimum
  check(config, [(field, ok, f"must be an integer >= {minimum}")])
  return int(got)


def number_in(config: Any, field: str, low: float, high: float) -> float:
  """``config.<field>`` as a float in ``[low, high]``, else ``ConfigError``."""
  got = value(config, field)
  ok = (not isinstance(got, bool) and isinstance(got, (int, float, np.number))
        and low <= float(got) <= high)
  check(config, [(field, ok, f"must be a number in [{low}, {high}]")])
  return float(got)


def write_resolved(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Writes ``workdir/config.json`` atomically and returns its path."""
  return atomic.write_json(os.path.join(workdir, "config.json"),
                           json.loads(config.to_json_best_effort()))
