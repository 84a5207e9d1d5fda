"""Inference: predictions, reconstruction and the gradient step on the embedding (reference §5).

The step moves the normalised encoder outputs ``O [B, T, H]`` up the predicted
score: ``O' = normalise_t(O + step_size * d(sum_b pred_b)/dO)`` (higher is
always better here: targets are oriented by ``fit``'s ``maximize``, reference
§9.1), then decodes greedily under the space's ``allowed`` mask. One compiled
call per seed batch does encode + gradient + decode, for any step size (a
traced scalar). ``generate`` runs the host loop over ``step_size = 1, 2, ...``,
de-duplicating by canonical hash against every architecture ever seen (fixes
§9.9), and reports honestly when fewer than ``num_new`` were found (§9.10).
"""

from __future__ import annotations

from typing import Any, Collection

import jax
import jax.numpy as jnp
import numpy as np

from nao_jax.controller import model as model_lib
from nao_jax.controller import train as train_lib
from nao_jax.spaces import base

Array = jax.Array
ControllerState = train_lib.ControllerState


def move_encoder_outputs(apply_fn: Any, params: Any, encoder_outputs: Array,
                         step_size: Array) -> Array:
  """``normalise_t(O + step_size * grad_O sum(pred))``: ``[B, T, H] -> [B, T, H]``.

  Pure; each row's prediction depends only on its own outputs, so the gradient
  of the sum is the per-row gradient.
  """
  def total_score(outputs):
    return jnp.sum(apply_fn({"params": params}, outputs, method="predict"))

  gradient = jax.grad(total_score)(encoder_outputs)
  return model_lib.normalise(encoder_outputs + step_size * gradient)


@jax.jit
def _predict_compiled(state: ControllerState, tokens: Array) -> Array:
  train_lib._count_trace("predict")
  outputs = state.apply_fn({"params": state.params}, tokens, method="encode")
  return state.apply_fn({"params": state.params}, outputs, method="predict")


@jax.jit
def _reconstruct_compiled(state: ControllerState, tokens: Array) -> Array:
  train_lib._count_trace("reconstruct")
  outputs = state.apply_fn({"params": state.params}, tokens, method="encode")
  return state.apply_fn({"params": state.params}, outputs, state.allowed,
                        method="decode_greedy")


@jax.jit
def step_and_decode(state: ControllerState, tokens: Array, step_size: Array) -> Array:
  """One step-size pass (encode + gradient step + masked greedy decode).

  Seeds int32 ``[B, L]`` -> new tokens int32 ``[B, L]``; ``step_size`` is traced,
  so every step size reuses one compilation.
  """
  train_lib._count_trace("step_and_decode")
  apply, params = state.apply_fn, {"params": state.params}
  outputs = apply(params, tokens, method="encode")
  moved = move_encoder_outputs(apply, state.params, outputs, step_size)
  return apply(params, moved, state.allowed, method="decode_greedy")


def _batched(state: ControllerState, function, tokens: np.ndarray, *args) -> list[np.ndarray]:
  """Runs ``function(state, chunk, *args)`` over row chunks padded to ``seed_batch``."""
  tokens = np.asarray(tokens, np.int32)
  length = state.settings.length
  if tokens.ndim != 2 or tokens.shape[1] != length:
    raise ValueError(f"tokens must be [N, {length}], got shape {tokens.shape}.")
  if tokens.shape[0] == 0:
    return []
  batch = state.settings.seed_batch
  results = []
  for start in range(0, tokens.shape[0], batch):
    chunk = tokens[start:start + batch]
    out = function(state, jnp.asarray(train_lib.pad_rows(chunk, batch)), *args)
    results.append(jax.tree_util.tree_map(lambda x: np.asarray(x)[:chunk.shape[0]], out))
  return results


def predict(state: ControllerState, tokens: np.ndarray) -> np.ndarray:
  """Predicted scores float32 ``[N]`` in (0, 1) (higher = better) of tokens ``[N, L]``."""
  chunks = _batched(state, _predict_compiled, tokens)
  return np.concatenate(chunks) if chunks else np.zeros((0,), np.float32)


def reconstruct(state: ControllerState, tokens: np.ndarray) -> np.ndarray:
  """Greedy masked decode of the encoding of tokens ``[N, L]`` -> int32 ``[N, L]``."""
  chunks = _batched(state, _reconstruct_compiled, tokens)
  return np.concatenate(chunks) if chunks else np.zeros((0, state.settings.length), np.int32)


def generate(state: ControllerState, space: base.SearchSpace, seed_tokens: np.ndarray,
             num_new: int, seen_hashes: Collection[str], max_step_size: int | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
  """New architectures by gradient steps from the seeds (reference §5, fixed).

  For ``step_size = 1, 2, ..., max_step_size``: move every seed's embedding and
  decode; keep each decoded arch whose canonical hash (``space.arch_hash``) is
  neither in ``seen_hashes`` nor already collected, in seed order, until
  ``num_new`` are found.

  Args:
    state: a trained controller.
    space: the search space the controller was built for.
    seed_tokens: int ``[S, L]``, e.g. the top-100 of the pool.
    num_new: how many new archs to collect.
    seen_hashes: ``space.arch_hash`` of every arch ever evaluated (not modified).
    max_step_size: defaults to ``generate.max_step_size``.
  Returns:
    ``(tokens int32 [n, L], predicted scores float32 [n])`` with ``n <= num_new``;
    ``n < num_new`` when the step sizes ran out first.
  """
  max_step_size = state.settings.max_step_size if max_step_size is None else max_step_size
  if space.length != state.settings.length or space.vocab_size != state.settings.vocab_size:
    raise ValueError(f"space {space.signature()} (length {space.length}, vocab "
                     f"{space.vocab_size}) does not match the controller (length "
                     f"{state.settings.length}, vocab {state.settings.vocab_size}).")
  seen = set(seen_hashes)
  new_tokens = []
  for step_size in range(1, max_step_size + 1):
    if len(new_tokens) >= num_new:
      break
    for tokens in _batched(state, step_and_decode, seed_tokens, jnp.float32(step_size)):
      for row in tokens:
        arch_hash = space.arch_hash(space.decode(row))
        if arch_hash not in seen:
          seen.add(arch_hash)
          new_tokens.append(row)
          if len(new_tokens) >= num_new:
            break
      if len(new_tokens) >= num_new:
        break
  if not new_tokens:
    return np.zeros((0, space.length), np.int32), np.zeros((0,), np.float32)
  new_tokens = np.stack(new_tokens).astype(np.int32)
  return new_tokens, predict(state, new_tokens)
