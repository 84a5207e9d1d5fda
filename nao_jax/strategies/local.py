"""Local search (White, Nolen, Savani, "Exploring the loss landscape in neural
architecture search", UAI 2021; naszilla's ``local_search``).

Starts from the best of ``initial`` uniform random archs. Each round asks for
every unseen one-token neighbour of the current centre (``one_token_neighbours``:
one position changed to another allowed token; the paper's "query the full
neighbourhood"). Once the neighbourhood has been told, the best neighbour becomes
the centre if it beats the centre; otherwise the centre is a local optimum and the
search restarts at one new random arch. Neighbours told before (from an earlier
descent) count with their recorded scores, so nothing is asked twice.

Deviations: the paper starts each run from one random arch (``initial=1``); its
``num_init=10`` default for NAS-Bench-201 comparisons is ours. A round may be cut
short by the budget (``ask(state, n)`` with ``n`` smaller than the neighbourhood):
the rest of the neighbourhood is asked the next round.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import ml_collections
import numpy as np

from nao_jax import configuration
from nao_jax.strategies import base


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      initial=10,  # Uniform random archs evaluated before the first descent.
  ))


@dataclasses.dataclass(frozen=True)
class LocalState:
  """Attributes:
    space, seed, initial: the settings.
    archive: every arch asked for and told.
    centre: int32 ``[length]`` tokens of the current centre, or None (before the
      first descent, and while a restart's random arch is pending).
    centre_score: its score (NaN while ``centre`` is None).
    num_asks: asks so far (the random stream of ask ``k`` is ``(seed, k)``).
    restarts: local optima met so far.
  """
  space: base.SearchSpace
  seed: int
  initial: int
  archive: base.Archive
  centre: np.ndarray | None
  centre_score: float
  num_asks: int
  restarts: int


def init(seed: int, space: base.SearchSpace, config: ml_collections.ConfigDict) -> LocalState:
  return LocalState(space, int(seed), configuration.positive_int(config, "initial"),
                    base.Archive.empty(space), None, float("nan"), 0, 0)


def _unseen_neighbours(state: LocalState) -> np.ndarray:
  return base.one_token_neighbours(state.space, state.centre[None], state.archive.seen)


def _in_restart(state: LocalState) -> bool:
  return state.centre is None and state.restarts > 0


def round_size(state: LocalState) -> int:
  if state.centre is None:
    return 1 if _in_restart(state) else max(state.initial - len(state.archive), 1)
  return max(len(_unseen_neighbours(state)), 1)


def ask(state: LocalState, n: int) -> tuple[list[Any], LocalState]:
  """Up to ``n`` archs: random ones before a centre exists, else the centre's
  unseen neighbours in ``one_token_neighbours`` order."""
  space = state.space
  if state.centre is None:
    archs = base.sample_unseen(space, base.numpy_rng(state.seed, state.num_asks), n,
                               state.archive.seen)
  else:
    archs = [space.decode(row) for row in _unseen_neighbours(state)[:n]]
  archive = state.archive.add_pending(space, archs)
  return archs, dataclasses.replace(state, archive=archive, num_asks=state.num_asks + 1)


def _told_neighbours(state: LocalState) -> tuple[np.ndarray, np.ndarray]:
  """Told archs one token from the centre: tokens ``[M, length]`` and scores ``[M]``."""
  differ = np.sum(state.archive.tokens != state.centre[None], axis=1) == 1
  return state.archive.tokens[differ], state.archive.scores[differ]


def _settle(state: LocalState) -> LocalState:
  """Moves the centre (or restarts) for as long as its neighbourhood has been told."""
  while (state.centre is not None and len(state.archive.pending) == 0
         and len(_unseen_neighbours(state)) == 0):
    tokens, scores = _told_neighbours(state)
    if len(scores) and scores.max() > state.centre_score:
      best = int(np.argmax(scores))
      state = dataclasses.replace(state, centre=tokens[best], centre_score=float(scores[best]))
    else:
      state = dataclasses.replace(state, centre=None, centre_score=float("nan"),
                                  restarts=state.restarts + 1)
  return state


def tell(state: LocalState, archs: Sequence[Any], scores: Sequence[float]) -> LocalState:
  """Records the scores; once nothing is pending, sets the first centre (the best
  initial arch, or a restart's arch) and moves it while its neighbourhood is told."""
  archive = state.archive.add_told(state.space, archs, scores)
  state = dataclasses.replace(state, archive=archive)
  if state.centre is None and len(archive.pending) == 0 and len(archive):
    if _in_restart(state):
      start = len(archive) - 1  # The restart's single random arch.
    elif len(archive) >= state.initial:
      start = int(archive.best(1)[0])
    else:
      return state
    state = dataclasses.replace(state, centre=archive.tokens[start],
                                centre_score=float(archive.scores[start]))
  return _settle(state)


def save(state: LocalState) -> tuple[dict[str, Any], dict[str, Any]]:
  centre = None if state.centre is None else state.centre.tolist()
  return {}, {"archive": state.archive.to_record(), "num_asks": state.num_asks,
              "centre": centre,
              "centre_score": None if state.centre is None else state.centre_score,
              "restarts": state.restarts}


def restore(seed: int, space: base.SearchSpace, config: ml_collections.ConfigDict,
            arrays: dict[str, Any], record: dict[str, Any]) -> LocalState:
  del arrays
  centre = record["centre"]
  return dataclasses.replace(
      init(seed, space, config), archive=base.Archive.from_record(space, record["archive"]),
      num_asks=int(record["num_asks"]), restarts=int(record["restarts"]),
      centre=None if centre is None else np.asarray(centre, np.int32),
      centre_score=float("nan") if centre is None else float(record["centre_score"]))


STRATEGY = base.Strategy(init, round_size, ask, tell, save, restore)
