"""A strategy setting against the defaults, paired by seed, from recorded runs.

  python benchmarks/compare_variants.py --set=nao.initial_pool=10
  python benchmarks/compare_variants.py --set=nao.initial_pool=10 \
      --benchmarks=nb201-c10,nb201-c100 --budgets=50,100,150

Reads the runs that ``benchmarks/nb201_search.py`` recorded (``--runs_dir``, default
``benchmarks/results/runs``: ``<benchmark>.jsonl``)
for the strategy with its default config and with ``--set`` applied; it runs
nothing. Run both first on the tuning seeds, e.g.

  python benchmarks/nb201_search.py --benchmark=nb201-c10 --quick --strategies=nao
  python benchmarks/nb201_search.py --benchmark=nb201-c10 --quick --strategies=nao \
      --set=nao.initial_pool=10

For each benchmark and budget it prints the variant's mean minus the default's,
over the seeds both have, ± the standard error of that paired difference, for
the reported metric (test accuracy of the best-by-search-metric arch) and for
the search metric itself, with the count of seeds better and worse. The last row
pools the benchmarks: each seed's difference divided by the standard deviation
of the default's reports on its benchmark (an effect size, so that benchmarks on
different scales weigh alike; a benchmark whose default runs all report the
same value at a budget is left out of it), averaged over every seed of every benchmark.
Only the tuning seeds (0-19) are read unless ``--seeds`` says otherwise:
settings are chosen on them alone.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import nb201_search  # noqa: E402


def best_at(run: dict, budget: int) -> tuple[float, float]:
  """(report, search score) of the run's best arch among its first ``budget``
  evaluations, as the search tables count it (``nb201_search.report_curve``)."""
  scores = np.array([run["scores"][:budget]])
  curve = nb201_search.report_curve(scores, np.array([run["reports"][:budget]]))
  return float(curve[0, -1]), float(scores.max())


def paired(default: dict[int, dict], variant: dict[int, dict], budget: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per common seed: the variant's report minus the default's ``[S]``, the same
  for the search score ``[S]``, and the default's reports ``[S]``."""
  seeds = sorted(set(default) & set(variant))
  rows = np.array([best_at(variant[s], budget) + best_at(default[s], budget) for s in seeds])
  if not len(rows):
    return np.zeros(0), np.zeros(0), np.zeros(0)
  return rows[:, 0] - rows[:, 2], rows[:, 1] - rows[:, 3], rows[:, 2]


def mean_and_error(values: np.ndarray) -> str:
  if len(values) < 2:
    return "-"
  return f"{values.mean():+.3f} ± {values.std(ddof=1) / np.sqrt(len(values)):.3f}"


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--strategy", default="nao", choices=nb201_search.STRATEGY_CHOICES)
  parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                      required=True, help="the variant's overrides, as for nb201_search.py")
  parser.add_argument("--benchmarks", default="nb201-c10,nb201-c100,nb201-in16")
  parser.add_argument("--budgets", default="50,100,150,200")
  parser.add_argument("--seeds", default=f"{nb201_search.TUNING_SEEDS.start}:"
                      f"{nb201_search.TUNING_SEEDS.stop}", help="FIRST:END (END excluded)")
  parser.add_argument("--runs_dir", default=str(nb201_search.RUNS_DIR),
                      help="folder of the <benchmark>.jsonl run records")
  args = parser.parse_args(argv)
  budgets = sorted(int(b) for b in args.budgets.split(","))
  first, _, end = args.seeds.partition(":")
  seeds = range(int(first), int(end))
  names = args.benchmarks.split(",")
  for name in names:
    if name not in nb201_search.BENCHMARKS:
      parser.error(f"--benchmarks: unknown {name!r}; choose from {sorted(nb201_search.BENCHMARKS)}")

  print(f"{args.strategy} with {' '.join(args.set)} minus its defaults, paired by seed "
        f"(seeds {seeds.start}-{seeds.stop - 1})\n")
  print("| benchmark | budget | seeds | report | better / worse | search metric |")
  print("|---|---|---|---|---|---|")
  pooled: dict[int, list[np.ndarray]] = {b: [] for b in budgets}
  for name in names:
    runs = nb201_search.load_runs(nb201_search.default_runs_path(name, args.runs_dir))
    prints = [nb201_search.fingerprint(name, args.strategy, overrides)
              for overrides in ((), tuple(args.set))]
    default, variant = ({seed: run for (strategy, fp, seed), run in runs.items()
                         if strategy == args.strategy and fp == fingerprint and seed in seeds
                         and len(run["scores"]) >= budgets[-1]} for fingerprint in prints)
    if not (set(default) & set(variant)):
      print(f"| {name} | - | 0 | no seed has both runs (default {len(default)}, "
            f"variant {len(variant)}) | | |")
      continue
    for budget in budgets:
      report, search, baseline = paired(default, variant, budget)
      spread = baseline.std(ddof=1) if len(baseline) > 1 else 0.0
      if spread > 0:
        pooled[budget].append(report / spread)
      print(f"| {name} | {budget} | {len(report)} | {mean_and_error(report)} | "
            f"{int((report > 0).sum())} / {int((report < 0).sum())} | {mean_and_error(search)} |")
  for budget in budgets:
    if pooled[budget]:
      effect = np.concatenate(pooled[budget])
      print(f"| pooled (effect size) | {budget} | {len(effect)} | {mean_and_error(effect)} | "
            f"{int((effect > 0).sum())} / {int((effect < 0).sum())} | |")


if __name__ == "__main__":
  main()
