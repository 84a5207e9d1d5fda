"""Where NAO's asks come from, round by round, in one run on a NAS-Bench-201 table.

  python benchmarks/nao_candidates.py --benchmark=nb201-c10 --seed=3
  python benchmarks/nao_candidates.py --benchmark=nb201-c100 --seed=3 --set=nao.initial_pool=10

Runs the search loop as ``benchmarks/nb201_search.py`` does (same config, same
``--set`` overrides) and, at every NAO round, records the candidates the
strategy ranked: those decoded from gradient steps (``controller.generate``) and
the one-token neighbours of its best archs (``nao._neighbours``), each with its
predicted score. Prints per round, after the evaluations told so far: how many
candidates of each kind, how many of the asked came from decoding, the Kendall
tau between predicted and table search metric over all candidates and over the
neighbours, the best search metric among the candidates and among those asked,
whether the table's best arch (the optimum) was a candidate and whether it was asked, and the
best search metric found so far. A diagnostic: it reads the strategy's candidates
by wrapping those two functions, and changes nothing of what the run asks.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import nb201_search  # noqa: E402  (sets the data path and the repo's import path)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--benchmark", default="nb201-c10",
                      choices=[b for b in nb201_search.BENCHMARKS if b.startswith("nb201")])
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--budget", type=int, default=200)
  parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
  args = parser.parse_args(argv)
  os.environ.setdefault("JAX_PLATFORMS", "cpu")

  import numpy as np  # pylint: disable=g-import-not-at-top
  from scipy import stats  # pylint: disable=g-import-not-at-top
  from nao_jax import controller, evaluators, search  # pylint: disable=g-import-not-at-top
  from nao_jax.strategies import nao  # pylint: disable=g-import-not-at-top

  config = nb201_search.benchmark_config(args.benchmark, "nao", tuple(args.set))
  config.seed, config.budget = args.seed, args.budget
  _, evaluator, strategy, state, _ = search.setup(config)
  table = evaluators.build_plain(config)  # For the candidates' scores.
  search_all, _ = table.all_scores()
  optimum = np.round(search_all.max(), nb201_search.DECIMALS)

  candidates: dict[str, tuple[np.ndarray, np.ndarray]] = {}
  generate, neighbours = controller.generate, nao._neighbours  # pylint: disable=protected-access

  def recording_generate(*a, **k):
    tokens, predicted = generate(*a, **k)
    candidates["decoded"] = (np.asarray(tokens), np.asarray(predicted))
    return tokens, predicted

  def recording_neighbours(nao_state, tokens):
    found, predicted = neighbours(nao_state, tokens)
    candidates["neighbours"] = (np.asarray(found), np.asarray(predicted))
    return found, predicted

  controller.generate, nao._neighbours = recording_generate, recording_neighbours  # pylint: disable=protected-access
  print(f"{args.benchmark}, seed {args.seed}, NAO {' '.join(args.set) or '(defaults)'}; "
        f"table's best {table.search_metric}: {optimum:.2f}")
  print("| evals told | decoded | neighbours | asked decoded | tau | tau neighbours "
        "| best candidate | best asked | optimum a candidate | optimum asked | best so far |")
  print("|" + "---|" * 11)
  told, best_so_far = 0, -np.inf
  try:
    for result in search.rounds(strategy, state, evaluator, args.budget):
      scores = [r["score"] for r in result.records]
      if candidates:
        kinds, predicted, true, hashes = [], [], [], []
        for kind in ("decoded", "neighbours"):
          tokens, values = candidates.get(kind, (np.zeros((0, 0)), np.zeros(0)))
          kinds += [kind] * len(values)
          predicted += list(values)
          archs = [table.space.decode(row) for row in tokens]
          hashes += [table.space.arch_hash(arch) for arch in archs]
          true += [np.round(e.score, nb201_search.DECIMALS) for e in table.evaluate(archs)]
        kinds, predicted, true = np.array(kinds), np.array(predicted), np.array(true)
        # The candidates the round evaluated (the rest of it, if any, was random).
        asked_hashes = {r["hash"] for r in result.records}
        asked = np.array([h in asked_hashes for h in hashes], bool)
        near = kinds == "neighbours"
        tau = stats.kendalltau(predicted, true)[0] if len(true) > 2 else np.nan
        tau_near = stats.kendalltau(predicted[near], true[near])[0] if near.sum() > 2 else np.nan
        print(f"| {told} | {int((~near).sum())} | {int(near.sum())} | "
              f"{int((~near[asked]).sum())} | {tau:.2f} | {tau_near:.2f} | {true.max():.2f} | "
              f"{true[asked].max() if asked.any() else np.nan:.2f} | "
              f"{bool((true >= optimum).any())} | "
              f"{bool((true[asked] >= optimum).any())} | {max(best_so_far, *scores):.2f} |",
              flush=True)
        candidates.clear()
      told += len(scores)
      best_so_far = max(best_so_far, *scores)
  finally:
    controller.generate, nao._neighbours = generate, neighbours  # pylint: disable=protected-access


if __name__ == "__main__":
  main()
