"""Where NAO's asks come from, round by round, in runs on a NAS-Bench-201 table.

  python benchmarks/nao_candidates.py --benchmark=nb201-c10 --seeds=3
  python benchmarks/nao_candidates.py --benchmark=nb201-c10 --seeds=0:20 --budget=100 --bananas
  python benchmarks/nao_candidates.py --benchmark=nb201-in16 --seeds=0:20 --budget=100 \
      --bananas --bananas_inputs=path,one_hot,embedding

Runs the search loop as ``benchmarks/nb201_search.py`` does (same config, same
``--set`` overrides) and, at every NAO round, records the candidates the
strategy ranked: those decoded from gradient steps (``controller.generate``) and
the one-token neighbours of its best archs (``nao._neighbours``), each with its
predicted score. Prints per round, after the evaluations told so far: how many
candidates of each kind, how many of the asked came from decoding, the Kendall
tau between predicted and table search metric over all candidates and over the
neighbours, the best search metric among the candidates and among those asked,
whether the table's best arch (the optimum) was a candidate and whether it was asked, and the
best search metric found so far.

``--bananas`` also fits BANANAS' predictor (``strategies.bananas`` at its
defaults: an ensemble of MLPs on the path encoding) on the same told archs and
ranks the same candidates by its ensemble mean: its tau, and whether the optimum
would have been among its best ``n`` (n: the candidates NAO asked that round),
and the best search metric among those ``n``. ``--bananas_inputs`` fits it on other
inputs as well, each apart: ``one_hot`` (the space's one-hot of the arch) or
``embedding`` (NAO's own arch embedding under the controller it ranked with), which
tells whether a ranking gap lies in NAO's embedding or in the predictor on it. With
several seeds, a summary follows: over the rounds before a run found the optimum,
how often it was a candidate, how often NAO asked it, how often BANANAS' ranking
would have, the mean taus of the two predictors, and the mean best search metric
each would have asked.

A diagnostic: it reads the strategy's candidates by wrapping those two
functions, and changes nothing of what the run asks.
"""

from __future__ import annotations

import argparse
import functools
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import nb201_search  # noqa: E402  (sets the data path and the repo's import path)


FEATURES = ("path", "one_hot", "embedding")


def features(kind: str, space, nao_controller, tokens):
  """float32 ``[N, D]`` of the archs ``tokens`` (int32 ``[N, L]``) as BANANAS' MLPs
  take them: ``path`` (its path encoding), ``one_hot`` (the space's one-hot), or
  ``embedding`` (NAO's arch embedding ``[N, H]`` under the controller it ranked with)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from nao_jax.controller import train as train_lib  # pylint: disable=g-import-not-at-top
  from nao_jax.strategies import bananas  # pylint: disable=g-import-not-at-top
  if kind == "path":
    return bananas.encode(space, [space.decode(row) for row in tokens])
  if kind == "one_hot":
    return np.stack([space.one_hot(space.decode(row)) for row in tokens]).astype(np.float32)
  rows = -(-len(tokens) // 256) * 256  # Padded to a multiple of 256: few compilations.
  padded = train_lib.pad_rows(np.asarray(tokens, np.int32), rows)
  return np.asarray(_embedder()(nao_controller, padded))[:len(tokens)]


@functools.cache
def _embedder():
  """jitted ``(ControllerState, tokens [N, L]) -> embedding [N, H]`` (no dropout)."""
  import jax  # pylint: disable=g-import-not-at-top
  from nao_jax.controller import model as model_lib  # pylint: disable=g-import-not-at-top
  return jax.jit(lambda state, tokens: model_lib.embedding_of(
      state.apply_fn({"params": state.params}, tokens, method="encode")))


def bananas_ranking(told, told_scores, candidates, seed: int):
  """BANANAS' ensemble mean, fitted at its defaults on the told archs' features
  (float ``[N, D]``) and scores (float ``[N]``), at the candidates' ``[C, D]``: float ``[C]``."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from nao_jax.strategies import bananas, surrogate  # pylint: disable=g-import-not-at-top
  c = bananas.default_config()
  targets = (told_scores - told_scores.mean()) / (told_scores.std() or 1.0)
  model = bananas.MLP(c.layers, c.width)
  params = surrogate.fit(model, (told,), targets, jax.random.key(seed), epochs=c.epochs,
                         batch_size=c.batch_size, learning_rate=c.learning_rate,
                         weight_decay=0.0, loss="mae", ensemble=c.ensemble)
  return np.asarray(surrogate.predict(model, params, (candidates,))).mean(0)


def run_seed(args, seed: int, rows: list[dict]) -> None:
  """Runs NAO on one seed, prints its rounds and appends one dict per round to ``rows``."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from scipy import stats  # pylint: disable=g-import-not-at-top
  from nao_jax import controller, evaluators, search  # pylint: disable=g-import-not-at-top
  from nao_jax.strategies import nao  # pylint: disable=g-import-not-at-top

  config = nb201_search.benchmark_config(args.benchmark, "nao", tuple(args.set))
  config.seed, config.budget = seed, args.budget
  _, evaluator, strategy, state, _ = search.setup(config)
  table = evaluators.build_plain(config)  # For the candidates' scores.
  search_all, _ = table.all_scores()
  optimum = np.round(search_all.max(), nb201_search.DECIMALS)

  candidates: dict[str, tuple[np.ndarray, np.ndarray]] = {}
  told_set: dict[str, np.ndarray] = {}
  generate, neighbours = controller.generate, nao._neighbours  # pylint: disable=protected-access

  def recording_generate(*a, **k):
    tokens, predicted = generate(*a, **k)
    candidates["decoded"] = (np.asarray(tokens), np.asarray(predicted))
    return tokens, predicted

  def recording_neighbours(nao_state, tokens):
    found, predicted = neighbours(nao_state, tokens)
    candidates["neighbours"] = (np.asarray(found), np.asarray(predicted))
    told_set["tokens"], told_set["scores"] = nao_state.archive.tokens, nao_state.archive.scores
    told_set["controller"] = nao_state.controller
    return found, predicted

  controller.generate, nao._neighbours = recording_generate, recording_neighbours  # pylint: disable=protected-access
  print(f"\n{args.benchmark}, seed {seed}, NAO {' '.join(args.set) or '(defaults)'}; "
        f"table's best {table.search_metric}: {optimum:.2f}")
  header = ("| evals told | decoded | neighbours | asked decoded | tau | tau neighbours "
            "| best candidate | best asked | optimum a candidate | optimum asked | best so far |")
  columns = 11
  for kind in args.bananas_inputs:
    on = "" if kind == "path" else f" on {kind}"
    header += (f" tau BANANAS{on} | best in BANANAS{on}' top n |"
               f" optimum in BANANAS{on}' top n |")
    columns += 3
  print(header)
  print("|" + "---|" * columns)
  told, best_so_far = 0, -np.inf
  try:
    for result in search.rounds(strategy, state, evaluator, args.budget):
      scores = [r["score"] for r in result.records]
      if candidates:
        kinds, predicted, true, hashes, tokens_all = [], [], [], [], []
        for kind in ("decoded", "neighbours"):
          tokens, values = candidates.get(kind, (np.zeros((0, 0), np.int32), np.zeros(0)))
          kinds += [kind] * len(values)
          predicted += list(values)
          tokens_all += list(tokens)
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
        found_before = np.round(best_so_far, nb201_search.DECIMALS) >= optimum
        row = dict(seed=seed, told=told, found_before=bool(found_before),
                   candidate=bool((true >= optimum).any()),
                   asked=bool((true[asked] >= optimum).any()), tau=tau,
                   best_asked=true[asked].max() if asked.any() else np.nan)
        line = (f"| {told} | {int((~near).sum())} | {int(near.sum())} | "
                f"{int((~near[asked]).sum())} | {tau:.2f} | {tau_near:.2f} | {true.max():.2f} | "
                f"{row['best_asked']:.2f} | {row['candidate']} | "
                f"{row['asked']} | {max(best_so_far, *scores):.2f} |")
        candidate_tokens = np.stack(tokens_all)
        for kind in args.bananas_inputs:
          told_features, candidate_features = (
              features(kind, table.space, told_set["controller"], tokens)
              for tokens in (told_set["tokens"], candidate_tokens))
          ranked = bananas_ranking(told_features, told_set["scores"], candidate_features,
                                   seed * 1000 + told)
          top = np.argsort(-ranked, kind="stable")[:int(asked.sum())]
          row[f"tau_{kind}"] = stats.kendalltau(ranked, true)[0] if len(true) > 2 else np.nan
          row[f"best_{kind}"] = true[top].max() if len(top) else np.nan
          row[f"asks_{kind}"] = bool((true[top] >= optimum).any())
          line += (f" {row[f'tau_{kind}']:.2f} | {row[f'best_{kind}']:.2f} |"
                   f" {row[f'asks_{kind}']} |")
        print(line, flush=True)
        rows.append(row)
        candidates.clear()
      told += len(scores)
      best_so_far = max(best_so_far, *scores)
  finally:
    controller.generate, nao._neighbours = generate, neighbours  # pylint: disable=protected-access


def summarise(rows: list[dict], bananas_inputs: tuple[str, ...]) -> None:
  """Prints, over the rounds before each run found the optimum, how often it was a
  candidate and asked, and the predictors' mean taus."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  searching = [r for r in rows if not r["found_before"]]
  seeds = sorted({r["seed"] for r in rows})

  def on(kind):
    return "" if kind == "path" else f" (on {kind})"

  def mean(key):
    return np.nanmean([r[key] for r in searching])

  print(f"\nSummary over {len(searching)} rounds of {len(seeds)} runs before each found the "
        "optimum:")
  print(f"- the optimum was a candidate in {sum(r['candidate'] for r in searching)}; "
        f"NAO asked it in {sum(r['asked'] for r in searching)}"
        + "".join(f", BANANAS'{on(kind)} ranking of the same candidates would have in "
                  f"{sum(r[f'asks_{kind}'] for r in searching)}" for kind in bananas_inputs))
  print(f"- runs that never found it: "
        f"{len(seeds) - len({r['seed'] for r in rows if r['found_before'] or r['asked']})}")
  print(f"- mean Kendall tau over the candidates: NAO {mean('tau'):.3f}"
        + "".join(f", BANANAS{on(kind)} {mean(f'tau_{kind}'):.3f}" for kind in bananas_inputs))
  print(f"- mean best search metric of the asked candidates: NAO {mean('best_asked'):.3f}"
        + "".join(f", BANANAS'{on(kind)} top n {mean(f'best_{kind}'):.3f}"
                  for kind in bananas_inputs))


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--benchmark", default="nb201-c10",
                      choices=[b for b in nb201_search.BENCHMARKS if b.startswith("nb201")])
  parser.add_argument("--seeds", "--seed", default="0", help="a seed, or A:B for seeds A..B-1")
  parser.add_argument("--budget", type=int, default=200)
  parser.add_argument("--bananas", action="store_true",
                      help="also rank the candidates by BANANAS' predictor")
  parser.add_argument("--bananas_inputs", default="path",
                      help=f"with --bananas, the inputs its MLPs are fitted on, a comma list of "
                           f"{', '.join(FEATURES)}")
  parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
  args = parser.parse_args(argv)
  args.bananas_inputs = tuple(args.bananas_inputs.split(",")) if args.bananas else ()
  for kind in args.bananas_inputs:
    if kind not in FEATURES:
      parser.error(f"--bananas_inputs: {kind!r} is not one of {', '.join(FEATURES)}.")
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  seeds = (nb201_search._seed_range(args.seeds) if ":" in args.seeds  # pylint: disable=protected-access
           else [int(args.seeds)])
  rows: list[dict] = []
  for seed in seeds:
    run_seed(args, seed, rows)
  if len(seeds) > 1 or args.bananas:
    summarise(rows, args.bananas_inputs)


if __name__ == "__main__":
  main()
