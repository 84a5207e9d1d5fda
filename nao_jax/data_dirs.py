"""Where nao_jax looks for data files a user fetches once (benchmark tables, PTB).

A config field naming the file always wins. When it is empty, a file is looked
up by its path relative to a data directory, in this order (``search_order``):

1. ``$NAO_JAX_DATA`` (one directory, or several separated by ``os.pathsep``);
2. ``./data`` below the current working directory;
3. ``~/.cache/nao_jax/data``.

The first directory holding the file wins; when none does, the error lists
every place tried and names the config field and the variable that fix it.
"""

from __future__ import annotations

import os
import pathlib

ENV = "NAO_JAX_DATA"


def search_order() -> list[pathlib.Path]:
  """The data directories, in the order they are tried."""
  from_env = [pathlib.Path(p).expanduser() for p in os.environ.get(ENV, "").split(os.pathsep)
              if p]
  return [*from_env, pathlib.Path.cwd() / "data", pathlib.Path.home() / ".cache" / "nao_jax" /
          "data"]


def find(given: str | os.PathLike | None, relative: str, field: str,
         description: str) -> pathlib.Path:
  """The file to read: ``given`` if set (it must exist), else the first data
  directory holding ``relative``.

  Args:
    given: the config's value (empty or None: look it up).
    relative: the file's path inside a data directory, e.g. 'nasbench201/nb201_acc.npz'.
    field: the config field that names the file, for the error ('path').
    description: what the file is and where it comes from, for the error.
  Raises:
    ValueError: naming the field, the places tried and the fix.
  """
  if given:
    path = pathlib.Path(given).expanduser()
    if not path.is_file():
      raise ValueError(f"{field}: file {str(path)!r} not found. Expected {description}. Fix "
                       f"the path, or leave {field} empty to look in ${ENV}.")
    return path
  tried = [directory / relative for directory in search_order()]
  for path in tried:
    if path.is_file():
      return path
  raise ValueError(
      f"{field}: {relative} not found in {', '.join(str(p) for p in tried)}. Expected "
      f"{description}. Set {ENV}=DIR (the directory holding {relative}) or pass the file "
      f"with {field}=FILE.")
