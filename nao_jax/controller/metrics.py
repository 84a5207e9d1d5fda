"""Controller quality metrics as pure jnp functions (jit-able; O(N^2) memory for rankings)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def _pair_signs(x: Array) -> Array:
  """``sign(x_i - x_j)`` for all pairs: ``[N] -> [N, N]``."""
  x = jnp.asarray(x, jnp.float32)
  return jnp.sign(x[:, None] - x[None, :])


def pairwise_accuracy(predictions: Array, targets: Array) -> Array:
  """Fraction of pairs with different targets that the predictions order the same way.

  Pairs whose predictions tie count as wrong. Returns 0.5 when no pair has
  different targets (nothing to rank).
  """
  target_signs = _pair_signs(targets)
  prediction_signs = _pair_signs(predictions)
  upper = jnp.triu(jnp.ones_like(target_signs, dtype=bool), k=1)
  comparable = upper & (target_signs != 0)
  correct = jnp.sum(comparable & (target_signs == prediction_signs))
  total = jnp.sum(comparable)
  return jnp.where(total > 0, correct / jnp.maximum(total, 1), 0.5)


def kendall_tau(predictions: Array, targets: Array) -> Array:
  """Kendall's tau-b (tie-corrected, as ``scipy.stats.kendalltau``); 0 when undefined."""
  a, b = _pair_signs(predictions), _pair_signs(targets)
  upper = jnp.triu(jnp.ones_like(a, dtype=bool), k=1)
  concordance = jnp.sum(jnp.where(upper, a * b, 0.0))
  untied_a = jnp.sum(upper & (a != 0)).astype(jnp.float32)
  untied_b = jnp.sum(upper & (b != 0)).astype(jnp.float32)
  denominator = jnp.sqrt(untied_a * untied_b)
  return jnp.where(denominator > 0, concordance / jnp.maximum(denominator, 1e-30), 0.0)


def reconstruction_rate(decoded: Array, tokens: Array) -> Array:
  """Fraction of rows of ``decoded [N, L]`` exactly equal to ``tokens [N, L]``."""
  return jnp.mean(jnp.all(jnp.asarray(decoded) == jnp.asarray(tokens), axis=-1))


def mean_hamming_distance(decoded: Array, tokens: Array) -> Array:
  """Mean over rows of the number of positions where ``decoded`` and ``tokens`` differ."""
  return jnp.mean(jnp.sum(jnp.asarray(decoded) != jnp.asarray(tokens), axis=-1))
