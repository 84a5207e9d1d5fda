"""Random search: uniform architectures, never one asked before."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import ml_collections

from nao_jax import configuration
from nao_jax.strategies import base


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      round_size=10,  # Archs asked per round (one checkpoint per round).
  ))


@dataclasses.dataclass(frozen=True)
class RandomState:
  """Attributes: space, seed, round_size, archive (all asked archs), num_asks."""
  space: base.SearchSpace
  seed: int
  round_size: int
  archive: base.Archive
  num_asks: int


def init(seed: int, space: base.SearchSpace, config: ml_collections.ConfigDict) -> RandomState:
  return RandomState(space, int(seed), configuration.positive_int(config, "round_size"),
                     base.Archive.empty(space), 0)


def round_size(state: RandomState) -> int:
  return state.round_size


def ask(state: RandomState, n: int) -> tuple[list[Any], RandomState]:
  """``n`` distinct uniform archs never asked before (fewer only if the space runs out)."""
  rng = base.numpy_rng(state.seed, state.num_asks)
  archs = base.sample_unseen(state.space, rng, n, state.archive.seen)
  archive = state.archive.add_pending(state.space, archs)
  return archs, dataclasses.replace(state, archive=archive, num_asks=state.num_asks + 1)


def tell(state: RandomState, archs: Sequence[Any], scores: Sequence[float]) -> RandomState:
  return dataclasses.replace(state, archive=state.archive.add_told(state.space, archs, scores))


def save(state: RandomState) -> tuple[dict[str, Any], dict[str, Any]]:
  return {}, {"archive": state.archive.to_record(), "num_asks": state.num_asks}


def restore(seed: int, space: base.SearchSpace, config: ml_collections.ConfigDict,
            arrays: dict[str, Any], record: dict[str, Any]) -> RandomState:
  del arrays
  state = init(seed, space, config)
  return dataclasses.replace(state, archive=base.Archive.from_record(space, record["archive"]),
                             num_asks=int(record["num_asks"]))


STRATEGY = base.Strategy(init, round_size, ask, tell, save, restore)
