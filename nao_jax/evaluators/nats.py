"""Reads the official NATS-Bench topology files (``NATS-tss-v1_0-3ffb9-simple``,
the NAS-Bench-201 cells) into the columns of ``nb201_acc.npz``.

The directory holds ``meta.pickle.pbz2`` (``{"meta_archs": [arch strings], ...}``)
and, per arch index ``i``, ``{i:06d}.pickle.pbz2``: a bz2-compressed pickle of
``{hp: state}`` for the training schedules ``hp`` in ``"12"``, ``"200"``, where
``state`` is NATS-Bench's ``ArchResults`` state dict; its ``all_results`` maps
``(dataset, seed)`` to a ``ResultsCount`` state dict whose ``eval_acc1es`` maps
``"<set>@<epoch>"`` to an accuracy in %, and ``params`` is the parameter count in
millions. Plain dicts, lists and numbers: no PyTorch is needed. Pickles run code
when loaded: read only files you downloaded from NATS-Bench yourself.

Columns (the mean over the seeds of the last epoch), as in ``nb201_acc.npz``:
``c10v_valid_200`` (cifar10-valid / x-valid), ``c10v_test_200`` (cifar10-valid /
ori-test), ``c10_test_200`` (cifar10 / ori-test), ``c100_valid_200``,
``c100_test_200``, ``in16_valid_200``, ``in16_test_200`` (x-valid / x-test), the
same with ``_12`` for the 12-epoch schedule, and ``params_mb``.

  python -m nao_jax.evaluators.nats --input=DIR --output=nb201_nats.npz

converts once (reading the 15,625 files takes minutes); ``evaluator.path`` takes
the directory itself or the converted file.
"""

from __future__ import annotations

import bz2
import os
import pathlib
import pickle
from typing import Any

import numpy as np

from nao_jax import progress
from nao_jax.spaces import nb201

META_FILE = "meta.pickle.pbz2"
# column -> (dataset, evaluation set); each with the suffixes _200 and _12.
COLUMNS = {
    "c10v_valid": ("cifar10-valid", "x-valid"),
    "c10v_test": ("cifar10-valid", "ori-test"),
    "c10_test": ("cifar10", "ori-test"),
    "c100_valid": ("cifar100", "x-valid"),
    "c100_test": ("cifar100", "x-test"),
    "in16_valid": ("ImageNet16-120", "x-valid"),
    "in16_test": ("ImageNet16-120", "x-test"),
}
HPS = ("200", "12")


def is_nats_directory(path: str | os.PathLike) -> bool:
  return (pathlib.Path(path) / META_FILE).is_file()


def _load(path: pathlib.Path) -> Any:
  try:
    with bz2.open(path, "rb") as f:
      return pickle.load(f)
  except Exception as e:  # bz2, pickle and OS errors of a damaged or foreign file.
    raise ValueError(f"path: {str(path)!r} is not a readable NATS-Bench pickle.pbz2 file "
                     f"({type(e).__name__}: {e}).") from None


def _final_accuracy(state: dict[str, Any], dataset: str, setname: str) -> float:
  """Mean over the seeds of ``dataset``'s last-epoch accuracy on ``setname``; NaN if absent."""
  values = []
  for (name, _), result in state.get("all_results", {}).items():
    if name == dataset:
      key = f"{setname}@{int(result['epochs']) - 1}"
      if key in result.get("eval_acc1es", {}):
        values.append(float(result["eval_acc1es"][key]))
  return float(np.mean(values)) if values else float("nan")


def read_topology(directory: str | os.PathLike) -> dict[str, np.ndarray]:
  """The table of a NATS-Bench topology directory: ``arch_str``, ``ops`` int8
  ``[N, 6]`` and the float ``[N]`` columns listed in the module docstring."""
  directory = pathlib.Path(directory)
  meta = _load(directory / META_FILE)
  if not isinstance(meta, dict) or not isinstance(meta.get("meta_archs"), list):
    raise ValueError(f"path: {str(directory / META_FILE)!r} has no 'meta_archs' list; "
                     "expected NATS-Bench's topology meta file.")
  space = nb201.Nb201Space()
  archs = meta["meta_archs"]
  columns = {f"{name}_{hp}": np.full(len(archs), np.nan) for name in COLUMNS for hp in HPS}
  columns["params_mb"] = np.full(len(archs), np.nan)
  ops = np.zeros((len(archs), len(nb201.EDGES)), np.int8)
  with progress.bar(len(archs), "reading NATS-Bench", "arch") as bar:
    for index, text in enumerate(archs):
      ops[index] = space.to_values(space.from_string(text))
      path = directory / f"{index:06d}.pickle.pbz2"
      if not path.is_file():
        raise ValueError(f"path: {str(directory)!r} lacks {path.name} (arch {index} of "
                         f"{len(archs)}); expected the complete NATS-tss-v1_0-3ffb9-simple "
                         "directory.")
      per_hp = _load(path)
      for hp in HPS:
        state = per_hp.get(hp) if isinstance(per_hp, dict) else None
        if state is None:
          continue
        for name, (dataset, setname) in COLUMNS.items():
          columns[f"{name}_{hp}"][index] = _final_accuracy(state, dataset, setname)
        if np.isnan(columns["params_mb"][index]):
          params = [r["params"] for (d, _), r in state.get("all_results", {}).items()
                    if d == "cifar10"]
          columns["params_mb"][index] = float(params[0]) if params else np.nan
      bar.update(1)
  measured = {k: v for k, v in columns.items() if not np.all(np.isnan(v))}
  return {"arch_str": np.asarray(archs), "ops": ops, **measured}


def main(argv: list[str]) -> None:
  del argv
  table = read_topology(_INPUT.value)
  np.savez_compressed(_OUTPUT.value, **table)
  print(f"wrote {_OUTPUT.value}: {len(table['ops'])} archs, columns "
        f"{sorted(k for k in table if k not in ('arch_str', 'ops'))}")


if __name__ == "__main__":
  from absl import app
  from absl import flags
  _INPUT = flags.DEFINE_string("input", None, "The NATS-tss-v1_0-3ffb9-simple directory.",
                               required=True)
  _OUTPUT = flags.DEFINE_string("output", None, "The .npz file to write.", required=True)
  app.run(main)
