"""What every search strategy shares: the ``Strategy`` interface and the archive
of architectures already asked for.

A strategy is a bundle of functions over an explicit, immutable state:

  state = strategy.init(seed, space, config)      # config: the strategy's section
  n = strategy.round_size(state)                  # how many it wants evaluated next
  archs, state = strategy.ask(state, n)           # never invalid, never asked before
  state = strategy.tell(state, archs, scores)     # scores: higher is better
  arrays, record = strategy.save(state)           # pytree of arrays + JSON dict
  state = strategy.restore(seed, space, config, arrays, record)

Three optional functions (None where a strategy has no use for them):

  state = strategy.rescore(state, pool, scores)   # an evaluator re-scored the pool
  predicted = strategy.predict(state, archs)      # float [N] or None, for reports
  values = strategy.metrics(state)                # {name: float} of its last fit, for logs

One flag: ``strategy.replaces_pool`` (default False): in a pool search, every
round's asks replace the whole pool (ENAS: the shared weights train on the
policy's fresh samples) instead of ``search.new_per_round`` of its worst.

``rescore`` is called by a pool search (an evaluator whose scores drift, the
NAO-WS supernet; ``evaluators.base``) after every round's ``tell``: ``pool`` is
every arch the search keeps, told before or just now, best first, with its
current score; scores told earlier for archs that left the pool are stale.

Randomness never lives in the state: the numpy generator or JAX key of the
``k``-th ask is derived from ``(seed, k)``, so a restored state continues with
exactly the draws the uninterrupted run would have made.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from nao_jax.spaces import base as spaces_base

SearchSpace = spaces_base.SearchSpace

# Spaces with at most this many sequences are enumerated when random draws keep
# hitting archs already asked for.
_ENUMERABLE = 2 ** 20


class Strategy(NamedTuple):
  """The functions of one strategy (see the module docstring)."""
  init: Callable[..., Any]
  round_size: Callable[[Any], int]
  ask: Callable[[Any, int], tuple[list[Any], Any]]
  tell: Callable[[Any, Sequence[Any], Sequence[float]], Any]
  save: Callable[[Any], tuple[dict[str, Any], dict[str, Any]]]
  restore: Callable[..., Any]
  rescore: Callable[[Any, Sequence[Any], Sequence[float]], Any] | None = None
  predict: Callable[[Any, Sequence[Any]], np.ndarray | None] | None = None
  metrics: Callable[[Any], dict[str, float]] | None = None
  replaces_pool: bool = False


def numpy_rng(seed: int, *path: int) -> np.random.Generator:
  """An independent numpy generator for ``(seed, *path)``, e.g. ``(seed, ask_index)``."""
  return np.random.default_rng(np.random.SeedSequence([int(seed), *map(int, path)]))


@dataclasses.dataclass(frozen=True)
class Archive:
  """Every architecture a strategy has asked for, in order.

  Attributes:
    tokens: int32 ``[N, length]`` token sequences of the told archs, in tell order.
    scores: float64 ``[N]`` their scores (higher is better).
    pending: int32 ``[M, length]`` archs asked for but not told yet.
    seen: hashes (``space.arch_hash``, canonical) of all of them.
  """
  tokens: np.ndarray
  scores: np.ndarray
  pending: np.ndarray
  seen: frozenset[str]

  @classmethod
  def empty(cls, space: SearchSpace) -> "Archive":
    none = np.zeros((0, space.length), np.int32)
    return cls(none, np.zeros((0,), np.float64), none, frozenset())

  def __len__(self) -> int:
    return int(self.scores.shape[0])

  def add_pending(self, space: SearchSpace, archs: Sequence[Any]) -> "Archive":
    """Records ``archs`` as asked; ``ValueError`` if one was asked before."""
    hashes = [space.arch_hash(a) for a in archs]
    if len(set(hashes)) != len(hashes) or self.seen.intersection(hashes):
      raise ValueError("a strategy asked twice for the same architecture (a bug).")
    tokens = np.stack([space.encode(a) for a in archs]) if archs else self.pending[:0]
    return dataclasses.replace(self, pending=np.concatenate([self.pending, tokens]),
                               seen=self.seen.union(hashes))

  def add_told(self, space: SearchSpace, archs: Sequence[Any],
               scores: Sequence[float]) -> "Archive":
    """Moves ``archs`` (asked before) from pending to told with their ``scores``."""
    if len(archs) != len(scores):
      raise ValueError(f"tell: {len(archs)} archs but {len(scores)} scores.")
    scores = np.asarray(scores, np.float64)
    if not np.all(np.isfinite(scores)):
      raise ValueError(f"tell: scores must be finite, got {scores.tolist()}.")
    tokens = np.stack([space.encode(a) for a in archs]) if archs else self.pending[:0]
    pending = [row for row in self.pending]
    for row in tokens:
      matches = [i for i, p in enumerate(pending) if np.array_equal(p, row)]
      if not matches:
        raise ValueError(f"tell: {space.to_string(space.decode(row))} was never asked for.")
      pending.pop(matches[0])
    pending = np.stack(pending) if pending else self.pending[:0]
    return dataclasses.replace(self, tokens=np.concatenate([self.tokens, tokens]),
                               scores=np.concatenate([self.scores, scores]), pending=pending)

  def best(self, k: int) -> np.ndarray:
    """Indices of the ``k`` best told archs, best first (ties: earliest first)."""
    return np.argsort(-self.scores, kind="stable")[:k]

  def to_record(self) -> dict[str, Any]:
    """JSON-serialisable form (floats written by ``json`` round-trip exactly)."""
    return {"tokens": self.tokens.tolist(), "scores": self.scores.tolist(),
            "pending": self.pending.tolist()}

  @classmethod
  def from_record(cls, space: SearchSpace, record: dict[str, Any]) -> "Archive":
    try:
      told = np.asarray(record["tokens"], np.int32).reshape(-1, space.length)
      pending = np.asarray(record["pending"], np.int32).reshape(-1, space.length)
      scores = np.asarray(record["scores"], np.float64).reshape(-1)
    except (KeyError, TypeError, ValueError) as e:
      raise ValueError(f"strategy checkpoint: malformed archive ({e}).") from None
    if scores.shape[0] != told.shape[0]:
      raise ValueError("strategy checkpoint: archive has different numbers of archs and scores.")
    seen = frozenset(space.arch_hash(space.decode(row)) for row in np.concatenate([told, pending]))
    return cls(told, scores, pending, seen)


def sample_unseen(space: SearchSpace, rng: np.random.Generator, n: int,
                  seen: frozenset[str] | set[str], max_tries: int = 20) -> list[Any]:
  """Up to ``n`` distinct uniform archs whose hashes are not in ``seen``.

  Draws by rejection; if that keeps failing (a nearly exhausted space) and the
  space has at most ``_ENUMERABLE`` sequences, picks among all unseen ones.
  Returns fewer than ``n`` only when fewer are left.
  """
  found, hashes = [], set(seen)
  for _ in range(max_tries):
    if len(found) == n:
      return found
    for arch in space.sample(rng, 2 * (n - len(found))):
      h = space.arch_hash(arch)
      if h not in hashes and len(found) < n:
        hashes.add(h)
        found.append(arch)
  if len(found) < n and float(np.prod(space.sizes.astype(np.float64))) <= _ENUMERABLE:
    every = np.stack(np.unravel_index(np.arange(int(np.prod(space.sizes))), space.sizes), axis=1)
    left = [a for a in map(space.from_values, every) if space.arch_hash(a) not in hashes]
    picks = rng.permutation(len(left))[:n - len(found)]
    found += [left[i] for i in sorted(picks)]
  return found


def one_token_neighbours(space: SearchSpace, rows: np.ndarray,
                         seen: frozenset[str] | set[str]) -> np.ndarray:
  """The distinct one-token neighbours of token ``rows`` int ``[S, L]`` (one
  position changed to another allowed token) whose hashes are not in ``seen``,
  in row, position and token order: int32 ``[M, L]``."""
  hashes, allowed, found = set(seen), space.allowed, []
  for row in rows:
    for position in range(space.length):
      for token in np.flatnonzero(allowed[position]):
        if token != row[position]:
          candidate = np.array(row, np.int32)
          candidate[position] = token
          h = space.arch_hash(space.decode(candidate))
          if h not in hashes:
            hashes.add(h)
            found.append(candidate)
  return np.stack(found) if found else np.zeros((0, space.length), np.int32)
