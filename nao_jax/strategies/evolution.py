"""Regularized (aging) evolution (Real et al., AmoebaNet, 2019).

The first ``population`` archs are uniform random. After that every child is a
mutation (one token changed, ``space.mutate``) of the best of ``tournament``
population members drawn without replacement; each told child joins the
population and the oldest member leaves it, so the population is always the
``population`` most recently told archs. In a pool search (NAO-WS's supernet,
whose scores drift; ``strategies.base``) re-scored members take their current scores.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import ml_collections
import numpy as np

from nao_jax import configuration
from nao_jax.strategies import base

# Mutations of a winner tried before falling back to a fresh random arch, when
# every mutation drawn was already asked for.
_MUTATION_TRIES = 50


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      population=20,  # P: archs alive at once (NAS-Bench-201 paper: 10; we use 20).
      tournament=5,  # S: members drawn per tournament.
      round_size=1,  # Children asked per round; 1 is the sequential algorithm.
  ))


@dataclasses.dataclass(frozen=True)
class EvolutionState:
  """Attributes:
    space, seed, population_size, tournament_size, round_size: the settings.
    archive: every arch asked for (for de-duplication) and told.
    population: int32 ``[<=P, length]`` tokens, oldest first.
    population_scores: float64 ``[<=P]``.
    num_asks: asks so far (the ask's random stream is ``(seed, num_asks)``).
  """
  space: base.SearchSpace
  seed: int
  population_size: int
  tournament_size: int
  round_size: int
  archive: base.Archive
  population: np.ndarray
  population_scores: np.ndarray
  num_asks: int


def init(seed: int, space: base.SearchSpace,
         config: ml_collections.ConfigDict) -> EvolutionState:
  population = configuration.positive_int(config, "population", 2)
  tournament = configuration.positive_int(config, "tournament")
  configuration.check(config, [("tournament", tournament <= population,
                                f"must be <= population ({population})")])
  archive = base.Archive.empty(space)
  return EvolutionState(space, int(seed), population, tournament,
                        configuration.positive_int(config, "round_size"), archive,
                        archive.tokens, archive.scores, 0)


def round_size(state: EvolutionState) -> int:
  return state.round_size


def _child(state: EvolutionState, rng: np.random.Generator, seen: set[str]) -> Any | None:
  """A mutation of a tournament winner that is not in ``seen``, or None."""
  space = state.space
  size = min(state.tournament_size, len(state.population_scores))
  for _ in range(_MUTATION_TRIES):
    members = rng.choice(len(state.population_scores), size=size, replace=False)
    winner = members[np.argmax(state.population_scores[members])]
    child = space.mutate(rng, space.decode(state.population[winner]))
    if space.arch_hash(child) not in seen:
      return child
  return None


def ask(state: EvolutionState, n: int) -> tuple[list[Any], EvolutionState]:
  """``n`` new archs: random while fewer than P were asked, then mutated winners."""
  rng = base.numpy_rng(state.seed, state.num_asks)
  space, seen, archs = state.space, set(state.archive.seen), []
  asked = len(state.archive) + len(state.archive.pending)
  for _ in range(n):
    child = None
    if asked + len(archs) >= state.population_size and len(state.population_scores):
      child = _child(state, rng, seen)
    if child is None:
      fresh = base.sample_unseen(space, rng, 1, seen)
      if not fresh:
        break
      child = fresh[0]
    seen.add(space.arch_hash(child))
    archs.append(child)
  archive = state.archive.add_pending(space, archs)
  return archs, dataclasses.replace(state, archive=archive, num_asks=state.num_asks + 1)


def tell(state: EvolutionState, archs: Sequence[Any],
         scores: Sequence[float]) -> EvolutionState:
  """Adds the told archs to the population, dropping the oldest beyond P."""
  archive = state.archive.add_told(state.space, archs, scores)
  tokens = archive.tokens[len(state.archive):]
  population = np.concatenate([state.population, tokens])[-state.population_size:]
  population_scores = np.concatenate(
      [state.population_scores, np.asarray(scores, np.float64)])[-state.population_size:]
  return dataclasses.replace(state, archive=archive, population=population,
                             population_scores=population_scores)


def rescore(state: EvolutionState, pool: Sequence[Any],
            scores: Sequence[float]) -> EvolutionState:
  """Population members in ``pool`` take their current scores (a pool search
  re-scored them); the others keep their last ones."""
  current = {state.space.arch_hash(a): float(s) for a, s in zip(pool, scores)}
  hashes = [state.space.arch_hash(state.space.decode(row)) for row in state.population]
  population_scores = np.asarray([current.get(h, s) for h, s in
                                  zip(hashes, state.population_scores)], np.float64)
  return dataclasses.replace(state, population_scores=population_scores)


def save(state: EvolutionState) -> tuple[dict[str, Any], dict[str, Any]]:
  return {}, {"archive": state.archive.to_record(), "num_asks": state.num_asks,
              "population": state.population.tolist(),
              "population_scores": state.population_scores.tolist()}


def restore(seed: int, space: base.SearchSpace, config: ml_collections.ConfigDict,
            arrays: dict[str, Any], record: dict[str, Any]) -> EvolutionState:
  del arrays
  state = init(seed, space, config)
  return dataclasses.replace(
      state, archive=base.Archive.from_record(space, record["archive"]),
      num_asks=int(record["num_asks"]),
      population=np.asarray(record["population"], np.int32).reshape(-1, space.length),
      population_scores=np.asarray(record["population_scores"], np.float64).reshape(-1))


STRATEGY = base.Strategy(init, round_size, ask, tell, save, restore, rescore)
