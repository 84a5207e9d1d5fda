"""REINFORCE with an LSTM policy over tokens (NAS-RL, Zoph & Le, 2017).

The policy emits one token per position from an LSTM fed the previous token
(SOS first); logits outside the space's ``allowed`` mask are removed, so every
sample is a valid architecture. Each ``tell`` makes one Adam step on

  loss = -mean_b (r_b - baseline) * log p(seq_b) - entropy_weight * mean_b H(seq_b)

where the baseline is an exponential moving average of the rewards told
before (the first batch's mean to start). ``batch_per_step`` > 0 splits a tell
into steps of that many archs, in order, the baseline moving after each (ENAS
aggregates 10 samples per step); ``tanh_constant`` > 0 bounds the logits to
``c * tanh(logits)`` (ENAS: 1.1), which keeps the policy from collapsing early.
Samples already asked for are rejected and drawn again (their probability is
not renormalised: the policy gradient is still that of the unconstrained policy).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import flax.linen as nn
from flax import serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from nao_jax import configuration
from nao_jax.strategies import base

# Policy batches drawn per ask before falling back to uniform unseen archs.
_SAMPLE_TRIES = 20
_MASKED = -1e9


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      hidden_size=64,
      learning_rate=0.01,
      ema_decay=0.9,  # Baseline b <- decay * b + (1 - decay) * reward.
      entropy_weight=0.0,
      round_size=5,  # Archs sampled per ask.
      batch_per_step=0,  # Archs per policy-gradient step; 0: one step per tell.
      tanh_constant=0.0,  # > 0: logits bounded to c * tanh(logits).
  ))


class Policy(nn.Module):
  """Autoregressive LSTM policy over a space's tokens.

  Attributes:
    vocab_size: number of tokens (0 = SOS).
    hidden_size: LSTM width (also the token embedding width).
    tanh_constant: > 0: logits ``c * tanh(raw)``; 0: raw logits.
  """
  vocab_size: int
  hidden_size: int = 64
  tanh_constant: float = 0.0

  def setup(self):
    self.embed = nn.Embed(self.vocab_size, self.hidden_size, name="embed")
    self.cell = nn.OptimizedLSTMCell(self.hidden_size, name="lstm")
    self.head = nn.Dense(self.vocab_size, name="logits")

  def step(self, carry: Any, previous: jax.Array) -> tuple[Any, jax.Array]:
    """One position: previous token int ``[B]`` -> (carry, logits ``[B, V]``)."""
    carry, hidden = self.cell(carry, self.embed(previous))
    logits = self.head(hidden)
    if self.tanh_constant > 0:
      logits = self.tanh_constant * jnp.tanh(logits)
    return carry, logits

  def initial_carry(self, batch: int) -> Any:
    zeros = jnp.zeros((batch, self.hidden_size), jnp.float32)
    return (zeros, zeros)

  def __call__(self, tokens: jax.Array) -> jax.Array:
    """Teacher-forced logits: tokens int ``[B, L]`` -> float ``[B, L, V]``."""
    previous = jnp.concatenate([jnp.zeros_like(tokens[:, :1]), tokens[:, :-1]], axis=1)
    carry, logits = self.initial_carry(tokens.shape[0]), []
    for t in range(tokens.shape[1]):
      carry, step_logits = self.step(carry, previous[:, t])
      logits.append(step_logits)
    return jnp.stack(logits, axis=1)


def _masked_log_probs(logits: jax.Array, allowed: jax.Array) -> jax.Array:
  """Log-softmax over the allowed tokens: ``[..., L, V]`` with ``allowed [L, V]``."""
  return jax.nn.log_softmax(jnp.where(allowed, logits, _MASKED), axis=-1)


@functools.partial(jax.jit, static_argnums=(0, 4))
def sample_tokens(policy: Policy, params: Any, allowed: jax.Array, key: jax.Array,
                  batch: int) -> jax.Array:
  """Draws ``batch`` sequences: int32 ``[batch, L]`` (valid under ``allowed``)."""
  carry = policy.initial_carry(batch)
  previous = jnp.zeros((batch,), jnp.int32)
  tokens = []
  for t in range(allowed.shape[0]):
    carry, logits = policy.apply(params, carry, previous, method=Policy.step)
    log_probs = _masked_log_probs(logits, allowed[t])
    previous = jax.random.categorical(jax.random.fold_in(key, t), log_probs).astype(jnp.int32)
    tokens.append(previous)
  return jnp.stack(tokens, axis=1)


def sequence_log_prob(policy: Policy, params: Any, allowed: jax.Array,
                      tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Log-probability ``[B]`` and entropy ``[B]`` (summed over positions) of ``tokens [B, L]``."""
  log_probs = _masked_log_probs(policy.apply(params, tokens), allowed)
  chosen = jnp.take_along_axis(log_probs, tokens[..., None], axis=-1)[..., 0]
  entropy = -jnp.sum(jnp.where(allowed, jnp.exp(log_probs) * log_probs, 0.0), axis=-1)
  return jnp.sum(chosen, axis=-1), jnp.sum(entropy, axis=-1)


@functools.partial(jax.jit, static_argnums=(0, 1))
def update(policy: Policy, optimizer: optax.GradientTransformation, params: Any,
           opt_state: Any, allowed: jax.Array, tokens: jax.Array, advantages: jax.Array,
           entropy_weight: float) -> tuple[Any, Any, dict[str, jax.Array]]:
  """One REINFORCE step on ``tokens [B, L]`` with ``advantages [B]``."""

  def loss_fn(params):
    log_prob, entropy = sequence_log_prob(policy, params, allowed, tokens)
    loss = -jnp.mean(advantages * log_prob) - entropy_weight * jnp.mean(entropy)
    return loss, jnp.mean(entropy)

  (loss, entropy), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, {"loss": loss, "entropy": entropy}


@functools.lru_cache(maxsize=None)
def _adam(learning_rate: float) -> optax.GradientTransformation:
  """One transformation object per rate, so jitted updates compile once per process."""
  return optax.adam(learning_rate)


@dataclasses.dataclass(frozen=True)
class ReinforceState:
  """Attributes:
    space, seed, config: the settings (config: the validated strategy section).
    policy, optimizer: the Flax module and optax transformation (static).
    params, opt_state: the policy's parameters and Adam state.
    baseline: EMA of the rewards (NaN before the first tell).
    archive: every arch asked for and told; num_asks: asks so far.
  """
  space: base.SearchSpace
  seed: int
  config: ml_collections.ConfigDict
  policy: Policy
  optimizer: optax.GradientTransformation
  params: Any
  opt_state: Any
  baseline: float
  archive: base.Archive
  num_asks: int


def init(seed: int, space: base.SearchSpace,
         config: ml_collections.ConfigDict) -> ReinforceState:
  configuration.positive_int(config, "hidden_size")
  configuration.positive_int(config, "round_size")
  learning_rate = configuration.number_in(config, "learning_rate", 0.0, 10.0)
  configuration.number_in(config, "ema_decay", 0.0, 1.0)
  configuration.number_in(config, "entropy_weight", 0.0, 1e3)
  configuration.check(config, [
      ("batch_per_step", isinstance(config.get("batch_per_step", 0), int)
       and config.get("batch_per_step", 0) >= 0, "must be an integer >= 0 (0: one step per tell)")])
  tanh_constant = configuration.number_in(config, "tanh_constant", 0.0, 1e3) if (
      "tanh_constant" in config) else 0.0
  policy = Policy(space.vocab_size, config.hidden_size, tanh_constant)
  optimizer = _adam(learning_rate)
  key = jax.random.fold_in(jax.random.key(seed), 0)
  params = policy.init(key, jnp.zeros((1, space.length), jnp.int32))
  return ReinforceState(space, int(seed), config, policy, optimizer, params,
                        optimizer.init(params), float("nan"), base.Archive.empty(space), 0)


def round_size(state: ReinforceState) -> int:
  return int(state.config.round_size)


def ask(state: ReinforceState, n: int) -> tuple[list[Any], ReinforceState]:
  """``n`` distinct policy samples never asked before (uniform unseen archs if the
  policy keeps repeating itself)."""
  space, seen, archs = state.space, set(state.archive.seen), []
  key = jax.random.fold_in(jax.random.key(state.seed), 1 + state.num_asks)
  allowed = jnp.asarray(space.allowed)
  for attempt in range(_SAMPLE_TRIES):
    if len(archs) == n:
      break
    tokens = np.asarray(sample_tokens(state.policy, state.params, allowed,
                                      jax.random.fold_in(key, attempt), 2 * n))
    for row in tokens:
      arch = space.decode(row)
      if len(archs) < n and space.arch_hash(arch) not in seen:
        seen.add(space.arch_hash(arch))
        archs.append(arch)
  if len(archs) < n:
    rng = base.numpy_rng(state.seed, state.num_asks)
    archs += base.sample_unseen(space, rng, n - len(archs), seen)
  archive = state.archive.add_pending(space, archs)
  return archs, dataclasses.replace(state, archive=archive, num_asks=state.num_asks + 1)


def tell(state: ReinforceState, archs: Sequence[Any],
         scores: Sequence[float]) -> ReinforceState:
  """Records the scores and makes policy-gradient steps on them: one, or one per
  ``batch_per_step`` archs."""
  archive = state.archive.add_told(state.space, archs, scores)
  if not archs:
    return dataclasses.replace(state, archive=archive)
  rewards = np.asarray(scores, np.float64)
  baseline = state.baseline if np.isfinite(state.baseline) else float(rewards.mean())
  decay = float(state.config.ema_decay)
  tokens = np.stack([state.space.encode(a) for a in archs])
  size = state.config.get("batch_per_step", 0) or len(archs)
  params, opt_state = state.params, state.opt_state
  for start in range(0, len(archs), size):
    chunk = slice(start, start + size)
    advantages = rewards[chunk] - baseline
    for reward in rewards[chunk]:
      baseline = decay * baseline + (1.0 - decay) * float(reward)
    params, opt_state, _ = update(
        state.policy, state.optimizer, params, opt_state, jnp.asarray(state.space.allowed),
        jnp.asarray(tokens[chunk]), jnp.asarray(advantages, jnp.float32),
        float(state.config.entropy_weight))
  return dataclasses.replace(state, params=params, opt_state=opt_state, baseline=baseline,
                             archive=archive)


def log_probability(state: ReinforceState, archs: Sequence[Any]) -> np.ndarray:
  """The policy's log-probability float ``[len(archs)]`` of each arch."""
  tokens = jnp.asarray(np.stack([state.space.encode(a) for a in archs]))
  log_prob, _ = sequence_log_prob(state.policy, state.params,
                                  jnp.asarray(state.space.allowed), tokens)
  return np.asarray(log_prob)


def save(state: ReinforceState) -> tuple[dict[str, Any], dict[str, Any]]:
  arrays = {"params": state.params,
            "opt_state": serialization.to_state_dict(state.opt_state)}
  return arrays, {"archive": state.archive.to_record(), "num_asks": state.num_asks,
                  "baseline": None if np.isnan(state.baseline) else state.baseline}


def restore(seed: int, space: base.SearchSpace, config: ml_collections.ConfigDict,
            arrays: dict[str, Any], record: dict[str, Any]) -> ReinforceState:
  state = init(seed, space, config)
  params = serialization.from_state_dict(state.params, arrays["params"])
  opt_state = serialization.from_state_dict(state.opt_state, arrays["opt_state"])
  baseline = record["baseline"]
  return dataclasses.replace(
      state, params=jax.tree.map(jnp.asarray, params),
      opt_state=jax.tree.map(jnp.asarray, opt_state),
      baseline=float("nan") if baseline is None else float(baseline),
      archive=base.Archive.from_record(space, record["archive"]),
      num_asks=int(record["num_asks"]))


STRATEGY = base.Strategy(init, round_size, ask, tell, save, restore)
