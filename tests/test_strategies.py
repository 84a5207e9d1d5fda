"""Strategies: valid and never-repeated asks, exact save/restore, evolution's
ageing, REINFORCE's policy gradient."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nao_jax import spaces
from nao_jax import strategies
from nao_jax.checkpoint import Checkpointer
from nao_jax.strategies import evolution
from nao_jax.strategies import reinforce

STRATEGIES = ("random", "evolution", "reinforce", "enas", "nao", "local", "bananas", "gcn")


def small_config(name, round_size=7):
  """``name``'s defaults made cheap; every round asks ``round_size`` archs (but
  local search's, the size of a neighbourhood)."""
  config = strategies.default_config(name)
  if name == "nao":
    config.initial_pool = config.new_per_round = round_size
    config.candidates_per_round = 10
    config.max_step_size = 5
    config.controller.train.epochs = 5
  elif name == "local":
    config.initial = round_size
  else:
    config.round_size = round_size
  if name in ("bananas", "gcn"):
    config.initial = round_size
    config.epochs = 5
    config.candidates = 50
  return config


def toy_score(space, arch):
  """A deterministic score with structure (so evolution/REINFORCE have a signal)."""
  tokens = space.encode(arch)
  return float(np.sum(tokens * np.arange(1, len(tokens) + 1)) % 17 + 0.01 * tokens[0])


def run_rounds(strategy, state, space, num_rounds):
  asked = []
  for _ in range(num_rounds):
    archs, state = strategy.ask(state, strategy.round_size(state))
    asked += archs
    state = strategy.tell(state, archs, [toy_score(space, a) for a in archs])
  return asked, state


@pytest.mark.parametrize("name", STRATEGIES)
@pytest.mark.parametrize("space_name", ["nb201", "macro"])
def test_asks_are_valid_and_never_repeated(name, space_name):
  space = spaces.get(space_name)
  config = small_config(name)
  if name == "evolution":
    config.population, config.tournament = 10, 3
  strategy = strategies.get(name)
  num_rounds = 5 if name == "nao" else 20  # NAO: few rounds, its controller is slower.
  asked, state = run_rounds(strategy, strategy.init(3, space, config), space, num_rounds)
  if name != "local":
    assert len(asked) == 7 * num_rounds
  for arch in asked:
    assert space.decode(space.encode(arch)) == space.check(arch)
  hashes = [space.arch_hash(a) for a in asked]
  assert len(set(hashes)) == len(hashes)
  assert len(state.archive) == len(asked) and len(state.archive.pending) == 0


def test_random_exhausts_a_tiny_space_without_repeats():
  space = spaces.get("nb201")
  strategy = strategies.get("random")
  config = strategies.default_config("random")
  state = strategy.init(0, space, config)
  # Pretend all but 3 archs were asked: only those 3 can come back.
  every = [space.from_values(np.unravel_index(i, [5] * 6)) for i in range(5 ** 6)]
  rest, keep = every[:-3], every[-3:]
  state = dataclasses.replace(state, archive=state.archive.add_pending(space, rest))
  archs, state = strategy.ask(state, 10)
  assert sorted(space.arch_hash(a) for a in archs) == sorted(space.arch_hash(a) for a in keep)
  archs, state = strategy.ask(state, 10)
  assert archs == []


@pytest.mark.parametrize("name", STRATEGIES)
def test_save_restore_continues_exactly(name, tmp_path):
  space = spaces.get("nb201")
  strategy = strategies.get(name)
  config = small_config(name, round_size=4)
  _, state = run_rounds(strategy, strategy.init(5, space, config), space, 2)
  pending, state = strategy.ask(state, 4)  # Asked, not told: must survive the round trip.
  arrays, record = strategy.save(state)
  with Checkpointer(str(tmp_path / "ckpt")) as ckpt:
    ckpt.save(1, {"strategy": arrays, "round": np.int64(0)}, {"strategy": record})
    restored_arrays, metadata = ckpt.restore(None)
  record = json.loads(json.dumps(metadata["strategy"]))
  restored = strategy.restore(5, space, config, restored_arrays.get("strategy", {}), record)
  scores = [toy_score(space, a) for a in pending]
  original_next, _ = run_rounds(strategy, strategy.tell(state, pending, scores), space, 2)
  restored_next, _ = run_rounds(strategy, strategy.tell(restored, pending, scores), space, 2)
  assert original_next == restored_next
  np.testing.assert_array_equal(restored.archive.scores, state.archive.scores)


def test_evolution_population_ages_and_children_are_mutants():
  space = spaces.get("nb201")
  config = evolution.default_config()
  config.population, config.tournament, config.round_size = 4, 2, 1
  state = evolution.init(0, space, config)
  told = []
  for step in range(12):
    (arch,), state = evolution.ask(state, 1)
    parents = [space.decode(row) for row in state.population]
    if step >= 4:  # After the random start, each child differs from a member in one token.
      distances = [np.sum(space.encode(arch) != space.encode(p)) for p in parents]
      assert min(distances) == 1
    score = float(step % 5)
    state = evolution.tell(state, [arch], [score])
    told.append((space.encode(arch), score))
    expected = told[-4:]  # The 4 most recently told, oldest first.
    np.testing.assert_array_equal(state.population, np.stack([t for t, _ in expected]))
    np.testing.assert_array_equal(state.population_scores, [s for _, s in expected])


def test_evolution_rejects_tournament_larger_than_population():
  config = evolution.default_config()
  config.population, config.tournament = 3, 5
  with pytest.raises(ValueError, match="tournament"):
    evolution.init(0, spaces.get("nb201"), config)


def test_reinforce_raises_probability_of_rewarded_sequence():
  space = spaces.get("nb201")
  config = reinforce.default_config()
  state = reinforce.init(0, space, config)
  archs, state = reinforce.ask(state, 8)
  target = archs[0]
  before = reinforce.log_probability(state, [target])[0]
  state = reinforce.tell(state, archs, [1.0] + [0.0] * 7)
  after_one = reinforce.log_probability(state, [target])[0]
  assert after_one > before
  for _ in range(10):
    others, state = reinforce.ask(state, 7)
    # Re-rewarding the same sequence is not allowed (never asked twice), so reward
    # its one-token neighbours less than the target was rewarded: its probability keeps rising.
    state = reinforce.tell(state, others, [0.0] * 7)
  assert reinforce.log_probability(state, [target])[0] > before + 1.0


def test_reinforce_steps_per_batch_as_successive_tells():
  space = spaces.get("nb201")
  config = reinforce.default_config()
  state = reinforce.init(0, space, config)
  first, state = reinforce.ask(state, 4)
  state = reinforce.tell(state, first, [0.1, 0.2, 0.3, 0.4])  # Sets the baseline.
  archs, state = reinforce.ask(state, 8)
  scores = [0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4]
  batched_config = reinforce.default_config()
  batched_config.batch_per_step = 3
  batched = reinforce.tell(dataclasses.replace(state, config=batched_config), archs, scores)
  one_by_one = state
  for chunk in (slice(0, 3), slice(3, 6), slice(6, 8)):
    one_by_one = reinforce.tell(one_by_one, archs[chunk], scores[chunk])
  assert int(batched.opt_state[0].count) == int(one_by_one.opt_state[0].count) == 4
  assert batched.baseline == pytest.approx(one_by_one.baseline)
  for a, b in zip(jax.tree.leaves(batched.params), jax.tree.leaves(one_by_one.params)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_enas_logits_are_bounded_by_its_tanh_constant():
  space = spaces.get("nb201")
  state = reinforce.init(0, space, strategies.default_config("enas"))
  logits = state.policy.apply(state.params, jnp.asarray([space.encode(space.sample(
      np.random.default_rng(0), 1)[0])]))
  assert state.policy.tanh_constant == 1.1
  assert float(jnp.max(jnp.abs(logits))) <= 1.1 and float(jnp.std(logits)) > 0
  assert strategies.get("enas").replaces_pool and not strategies.get("reinforce").replaces_pool


def test_unknown_strategy_lists_names():
  with pytest.raises(ValueError, match="choose one of"):
    strategies.get("bayesopt")


@pytest.mark.parametrize("space_name", ["nb201", "nasnet"])
def test_one_token_neighbours_are_every_unseen_single_change(space_name):
  space = spaces.get(space_name, **({"nodes": 2, "ops": "ws5"} if space_name == "nasnet" else {}))
  rows = np.stack([space.encode(a) for a in space.sample(np.random.default_rng(0), 2)])
  seen = {space.arch_hash(space.decode(rows[0]))}
  found = strategies.one_token_neighbours(space, rows, seen)
  hashes = [space.arch_hash(space.decode(t)) for t in found]
  assert len(set(hashes)) == len(hashes) and not seen.intersection(hashes)
  assert all(min(np.sum(t != r) for r in rows) == 1 for t in found)
  expected = set()  # Brute force: every allowed single change of either row.
  for row in rows:
    for position in range(space.length):
      for token in np.flatnonzero(space.allowed[position]):
        if token == row[position]:
          continue
        candidate = row.copy()
        candidate[position] = token
        expected.add(space.arch_hash(space.decode(candidate)))
  assert set(hashes) == expected - seen
