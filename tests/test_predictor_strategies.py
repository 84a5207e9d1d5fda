"""Local search's descent and restarts, the encodings the predictors read, and
that the surrogates (BANANAS' MLP ensemble, the GCN) learn a known function."""

import numpy as np
import pytest
import scipy.stats

from nao_jax import spaces
from nao_jax import strategies
from nao_jax.strategies import bananas
from nao_jax.strategies import gcn
from nao_jax.strategies import local
from nao_jax.strategies import surrogate

NB201 = spaces.get("nb201")
TARGET = NB201.from_values([3, 1, 2, 0, 4, 3])


def distance_score(arch):
  """Minus the number of edges whose op differs from TARGET's: one optimum, no plateaus."""
  return -float(np.sum(NB201.to_values(arch) != NB201.to_values(TARGET)))


def run(name, config, budget, score, seed=0):
  strategy = strategies.get(name)
  state, told = strategy.init(seed, NB201, config), []
  while len(told) < budget:
    archs, state = strategy.ask(state, min(strategy.round_size(state), budget - len(told)))
    state = strategy.tell(state, archs, [score(a) for a in archs])
    told += archs
  return told, state


def test_local_search_descends_to_the_optimum_of_a_unimodal_landscape():
  # 10 random starts, then at most 6 moves over neighbourhoods of 24.
  told, state = run("local", local.default_config(), 10 + 6 * 24, distance_score)
  assert TARGET in told
  # The optimum's own neighbourhood is all worse: the search then restarts.
  assert state.restarts == 1


def test_local_search_restarts_at_a_local_optimum():
  config = local.default_config()
  config.initial = 1
  # Every neighbour of the first arch scores lower: it is a local optimum.
  first = {}

  def score(arch):
    first.setdefault("arch", arch)
    return 1.0 if arch == first["arch"] else 0.0

  told, state = run("local", config, 1 + 24 + 1, score)
  neighbours = {NB201.arch_hash(NB201.decode(row)) for row in strategies.one_token_neighbours(
      NB201, NB201.encode(first["arch"])[None], set())}
  assert {NB201.arch_hash(a) for a in told[1:25]} == neighbours
  assert state.restarts == 1
  np.testing.assert_array_equal(state.centre, NB201.encode(told[25]))


def test_nb201_path_encoding_marks_the_routes_without_none():
  # Edges (0->1),(0->2),(1->2),(0->3),(1->3),(2->3); ops: 0 none, 1 skip, 2 conv1x1, 3 conv3x3, 4 avg.
  only_direct = NB201.from_values([0, 0, 0, 3, 0, 0])
  encoding = NB201.path_encoding(only_direct)
  assert encoding.shape == (4 + 16 + 64,)
  assert np.flatnonzero(encoding).tolist() == [2]  # Route 0->3, conv3x3 (digit 2).
  long_route = NB201.from_values([1, 0, 2, 0, 0, 4])  # 0->1 skip, 1->2 conv1x1, 2->3 avg.
  # Length 3, digits (0, 1, 3) in base 4 after the 4 + 16 shorter routes.
  assert np.flatnonzero(NB201.path_encoding(long_route)).tolist() == [20 + 0 * 16 + 1 * 4 + 3]
  assert not NB201.path_encoding(NB201.from_values([0] * 6)).any()


def test_nb201_op_graph_connects_edges_through_their_nodes():
  adjacency, labels = NB201.op_graph(NB201.from_values([1, 2, 3, 4, 0, 1]))
  vertex = {edge: i + 1 for i, edge in enumerate(((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)))}
  expected = {(0, vertex[(0, 1)]), (0, vertex[(0, 2)]), (0, vertex[(0, 3)]),
              (vertex[(0, 1)], vertex[(1, 2)]), (vertex[(0, 1)], vertex[(1, 3)]),
              (vertex[(0, 2)], vertex[(2, 3)]), (vertex[(1, 2)], vertex[(2, 3)]),
              (vertex[(0, 3)], 7), (vertex[(1, 3)], 7), (vertex[(2, 3)], 7)}
  assert set(zip(*np.nonzero(adjacency))) == expected
  assert labels.argmax(1).tolist() == [0, 2 + 1, 2 + 2, 2 + 3, 2 + 4, 2 + 0, 2 + 1, 1]


@pytest.mark.parametrize("name", ["macro", "nasnet"])
def test_default_encodings_are_a_chain_and_a_one_hot(name):
  space = spaces.get(name)
  arch = space.sample(np.random.default_rng(0), 1)[0]
  adjacency, labels = space.op_graph(arch)
  assert adjacency.sum() == space.length + 1 and np.all(np.diag(adjacency, 1) == 1)
  assert np.all(labels.sum(1) == 1)
  one_hot = space.one_hot(arch)
  assert one_hot.shape == (space.sizes.sum(),) and one_hot.sum() == space.length
  assert space.path_encoding(arch) is None


def _count_convs(arch):
  return float(np.sum(np.isin(NB201.to_values(arch), [2, 3])))


@pytest.mark.parametrize("predictor", ["bananas", "gcn"])
def test_surrogates_learn_a_known_function_of_the_arch(predictor):
  rng = np.random.default_rng(0)
  archs = NB201.sample(rng, 400)
  train, held_out = archs[:200], archs[200:]
  targets = np.array([_count_convs(a) for a in train]) / 6
  key = surrogate.jax.random.key(0)
  if predictor == "bananas":
    model = bananas.MLP(4, 32)
    # The one-hot: the path encoding hides edges on no route, which the target counts.
    inputs = lambda a: (np.stack([NB201.one_hot(x) for x in a]),)  # noqa: E731
    params = surrogate.fit(model, inputs(train), targets, key, epochs=100, batch_size=32,
                           learning_rate=0.01, weight_decay=0.0, loss="mae", ensemble=3)
  else:
    model = gcn.GCN(3, 64, 32, 0.0)
    inputs = lambda a: gcn.graphs(NB201, a)  # noqa: E731
    params = surrogate.fit(model, inputs(train), targets, key, epochs=100, batch_size=10,
                           learning_rate=1e-3, weight_decay=0.0)
  predicted = surrogate.predict(model, params, inputs(held_out))
  tau = scipy.stats.kendalltau(predicted.mean(0), [_count_convs(a) for a in held_out])[0]
  assert tau > 0.8
