"""Tests of the NAO controller (nao_jax/controller): model, training, inference, metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from nao_jax import checkpoint
from nao_jax import controller
from nao_jax import spaces
from nao_jax.controller import model as model_lib
from nao_jax.controller import optimize
from nao_jax.controller import train as train_lib

SPACE_SETTINGS = {"nasnet": {}, "nasnet_nao11": {"ops": "nao11"}, "nb201": {},
                  "rnn": {"activations": "nao_ws"}}


@pytest.fixture(autouse=True)
def strict_rank_promotion():
  with jax.numpy_rank_promotion("raise"):
    yield


def make_space(name):
  return spaces.get(name.split("_")[0], **SPACE_SETTINGS[name])


def sample_tokens(space, n, seed=0):
  archs = space.sample(np.random.default_rng(seed), n)
  return np.stack([space.encode(a) for a in archs])


@pytest.fixture(scope="module")
def nb201():
  return spaces.get("nb201")


@pytest.fixture(scope="module")
def trained_nb201(nb201):
  """A controller fitted to a learnable score (number of conv3x3 edges) on 60 cells."""
  tokens = sample_tokens(nb201, 60, seed=1)
  scores = np.sum(tokens == 4, axis=1) + 0.1 * np.sum(tokens == 3, axis=1)
  config = controller.default_config("nb201")
  config.predictor.dropout = 0.0
  state = controller.init(jax.random.key(0), nb201, config)
  state, metrics = controller.fit(state, tokens, scores, jax.random.key(1), epochs=300)
  return state, tokens, scores, metrics


def test_param_count_matches_reference_with_one_bias_per_lstm():
  # Reference: 279,533 with PyTorch's two bias vectors per LSTM (b_ih + b_hh);
  # nao_jax keeps one bias per LSTM: 279,533 - 2 LSTMs x 4 x 96 = 278,765.
  state = controller.init(jax.random.key(0), spaces.get("nasnet"), controller.default_config())
  assert controller.num_params(state) == 278_765 == 279_533 - 2 * 4 * 96
  assert state.settings.encoder_length == 20


def test_encoder_length_must_divide_length():
  config = controller.default_config("nasnet")
  config.encoder.length = 7
  with pytest.raises(ValueError, match=r"encoder.length=7 does not divide .* 40"):
    controller.init(jax.random.key(0), spaces.get("nasnet"), config)
  config = controller.default_config("nasnet")
  config.decoder.hidden_size = 64
  with pytest.raises(ValueError, match="decoder.hidden_size"):
    controller.init(jax.random.key(0), spaces.get("nasnet"), config)


def test_encoder_outputs_are_normalised_and_embedding_is_their_normalised_mean(nb201):
  state = controller.init(jax.random.key(0), nb201, controller.default_config("nb201"))
  tokens = jnp.asarray(sample_tokens(nb201, 5))
  _, _, inter = state.apply_fn({"params": state.params}, tokens)
  np.testing.assert_allclose(np.linalg.norm(inter["encoder_outputs"], axis=-1), 1.0, rtol=1e-5)
  mean = np.mean(np.asarray(inter["encoder_outputs"]), axis=1)
  np.testing.assert_allclose(inter["embedding"], mean / np.linalg.norm(mean, axis=-1,
                                                                       keepdims=True), rtol=1e-5)


def test_predictor_on_the_outputs_reads_each_position(nb201):
  """``predictor.input=outputs``: the predictor reads every encoder step ``[B, T * H]``,
  so swapping two steps changes the prediction; on the embedding (their mean) it does
  not. An invalid input is refused with the field named."""
  tokens = jnp.asarray(sample_tokens(nb201, 4))
  predictions = {}
  for kind in ("embedding", "outputs"):
    config = controller.default_config("nb201")
    config.predictor.input = kind
    state = controller.init(jax.random.key(0), nb201, config)
    steps = state.settings.encoder_length
    width = state.params["predictor"]["hidden_0"]["kernel"].shape[0]
    assert width == (steps * state.settings.hidden_size if kind == "outputs"
                     else state.settings.hidden_size)
    outputs = state.apply_fn({"params": state.params}, tokens, method="encode")
    swapped = outputs[:, ::-1]
    predict = lambda o, s=state: s.apply_fn({"params": s.params}, o, method="predict")
    predictions[kind] = np.abs(np.asarray(predict(outputs) - predict(swapped))).max()
  assert predictions["embedding"] < 1e-6 < predictions["outputs"]
  config = controller.default_config("nb201")
  config.predictor.input = "mean"
  with pytest.raises(ValueError, match="predictor.input='mean'"):
    controller.init(jax.random.key(0), nb201, config)


def test_lstm_custom_vjp_matches_autodiff_of_a_plain_scan():
  def plain(projected, kernel, state):
    def step(carry, x):
      hidden, cell = carry
      hidden, cell = model_lib._lstm_update(x + hidden @ kernel, cell)
      return (hidden, cell), hidden
    _, outputs = jax.lax.scan(step, state, jnp.swapaxes(projected, 0, 1))
    return jnp.swapaxes(outputs, 0, 1)

  keys = jax.random.split(jax.random.key(0), 5)
  projected = jax.random.normal(keys[0], (3, 7, 16))
  kernel = 0.5 * jax.random.normal(keys[1], (4, 16))
  hidden, cell = jax.random.normal(keys[2], (3, 4)), jax.random.normal(keys[3], (3, 4))
  weights = jax.random.normal(keys[4], (3, 7, 4))
  loss = lambda run: lambda *a: jnp.sum(run(a[0], a[1], (a[2], a[3])) * weights)
  args = (projected, kernel, hidden, cell)
  np.testing.assert_allclose(loss(model_lib.run_lstm)(*args), loss(plain)(*args), rtol=1e-6)
  ours = jax.grad(loss(model_lib.run_lstm), argnums=(0, 1, 2, 3))(*args)
  expected = jax.grad(loss(plain), argnums=(0, 1, 2, 3))(*args)
  for a, b in zip(ours, expected):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _predict_from_outputs(state, outputs):
  return state.apply_fn({"params": state.params}, outputs, method="predict")


def test_gradient_wrt_encoder_outputs_matches_finite_differences(trained_nb201):
  state, tokens, _, _ = trained_nb201
  outputs = state.apply_fn({"params": state.params}, jnp.asarray(tokens[:4]), method="encode")
  with jax.enable_x64(True):  # Float64 so that the central differences are exact enough.
    params = jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64), state.params)
    outputs = jnp.asarray(outputs, jnp.float64)
    total = lambda o: jnp.sum(state.apply_fn({"params": params}, o, method="predict"))
    moved = optimize.move_encoder_outputs(state.apply_fn, params, outputs, 1.0)
    gradient = jax.grad(total)(outputs)
    np.testing.assert_allclose(moved, model_lib.normalise(outputs + gradient), rtol=1e-12)
    for seed in range(3):
      direction = jax.random.normal(jax.random.key(seed), outputs.shape, jnp.float64)
      eps = 1e-8  # Small enough not to cross a ReLU kink.
      numeric = (total(outputs + eps * direction) - total(outputs - eps * direction)) / (2 * eps)
      analytic = jnp.sum(gradient * direction)
      np.testing.assert_allclose(float(analytic), float(numeric), rtol=1e-5, atol=1e-9)


def test_small_steps_raise_the_predicted_score(trained_nb201):
  state, tokens, _, _ = trained_nb201
  outputs = state.apply_fn({"params": state.params}, jnp.asarray(tokens), method="encode")
  before = _predict_from_outputs(state, outputs)
  for step_size in (1e-3, 1e-2):
    moved = optimize.move_encoder_outputs(state.apply_fn, state.params, outputs, step_size)
    after = _predict_from_outputs(state, moved)
    assert np.all(np.asarray(after) > np.asarray(before)), step_size


@pytest.mark.parametrize("space_name", sorted(SPACE_SETTINGS))
def test_decoded_sequences_are_always_valid(space_name):
  space = make_space(space_name)
  config = controller.default_config(space_name.split("_")[0])
  state = controller.init(jax.random.key(3), space, config)
  # Scale the logits layer up so the unmasked arg-max would often be invalid.
  params = jax.tree_util.tree_map(lambda x: x, state.params)
  params["decoder"]["logits_bias"] = jax.random.normal(
      jax.random.key(4), params["decoder"]["logits_bias"].shape) * 10.0
  state = state.replace(params=params)
  seeds = sample_tokens(space, 30, seed=2)
  for step_size in (0.0, 1.0, 30.0, 1000.0):
    new_tokens = optimize.step_and_decode(state, jnp.asarray(seeds), step_size)
    assert all(space.is_valid_tokens(row) for row in np.asarray(new_tokens))


def test_greedy_decoding_agrees_with_teacher_forced_logits(nb201):
  state = controller.init(jax.random.key(5), nb201, controller.default_config("nb201"))
  tokens = jnp.asarray(sample_tokens(nb201, 8))
  variables = {"params": state.params}
  outputs = state.apply_fn(variables, tokens, method="encode")
  greedy = controller.reconstruct(state, np.asarray(tokens))
  logits = state.apply_fn(
      variables, outputs, jnp.asarray(greedy),
      method=lambda m, o, t: m.decoder.teacher_forced(o, model_lib.embedding_of(o), t))
  masked = jnp.where(state.allowed[None], logits, -jnp.inf)
  np.testing.assert_array_equal(np.argmax(masked, axis=-1), greedy)
  assert outputs.shape == (8, state.settings.encoder_length, 96)


def test_training_reduces_loss_and_learns_ranking_and_reconstruction(trained_nb201):
  state, tokens, scores, metrics = trained_nb201
  assert metrics["loss"] < 0.2 * metrics["first_epoch_loss"], metrics
  preds = controller.predict(state, tokens)
  assert float(controller.metrics.kendall_tau(preds, scores)) > 0.8
  decoded = controller.reconstruct(state, tokens)
  assert float(controller.metrics.reconstruction_rate(decoded, tokens)) == 1.0
  assert float(controller.metrics.mean_hamming_distance(decoded, tokens)) == 0.0


def test_training_is_deterministic_for_a_seed(nb201):
  config = controller.default_config("nb201")
  tokens = sample_tokens(nb201, 40)
  scores = np.random.default_rng(0).random(40)
  results = []
  for _ in range(2):
    state = controller.init(jax.random.key(7), nb201, config)
    state, metrics = controller.fit(state, tokens, scores, jax.random.key(8), epochs=3)
    results.append((state.params, metrics))
  jax.tree_util.tree_map(np.testing.assert_array_equal, results[0][0], results[1][0])
  assert results[0][1] == results[1][1]


@pytest.mark.parametrize("scores", [np.full(30, 0.7), np.array([0.3])])
def test_degenerate_pools_train_without_nan(nb201, scores):
  state = controller.init(jax.random.key(0), nb201, controller.default_config("nb201"))
  tokens = sample_tokens(nb201, scores.shape[0])
  for transform in ("minmax", "rank", "standardize"):
    np.testing.assert_array_equal(train_lib.transform_targets(scores, transform, True), 0.5)
  state, metrics = controller.fit(state, tokens, scores, jax.random.key(1), epochs=2)
  assert all(np.isfinite(v) for v in metrics.values()), metrics
  assert np.all(np.isfinite(controller.predict(state, tokens)))


def test_no_retrace_across_rounds_epochs_and_pool_sizes(nb201):
  config = controller.default_config("nb201")
  state = controller.init(jax.random.key(0), nb201, config)
  rng = np.random.default_rng(0)
  seen = set()
  counts = dict(train_lib.TRACE_COUNTS)
  for round_index, (n, epochs) in enumerate([(120, 2), (150, 1), (199, 3), (101, 2)]):
    tokens = sample_tokens(nb201, n, seed=round_index)
    state, _ = controller.fit(state, tokens, rng.random(n), jax.random.key(round_index), epochs)
    controller.predict(state, tokens[:n - 50])
    seen.update(nb201.arch_hash(nb201.decode(t)) for t in tokens)
    controller.generate(state, nb201, tokens[:30 + round_index], 5, seen, max_step_size=3)
  new = {k: train_lib.TRACE_COUNTS.get(k, 0) - counts.get(k, 0) for k in train_lib.TRACE_COUNTS}
  assert new["fit"] <= 1 and new["predict"] <= 1 and new["step_and_decode"] <= 1, new


def test_generate_returns_unseen_distinct_archs(trained_nb201, nb201):
  state, tokens, _, _ = trained_nb201
  seen = {nb201.arch_hash(nb201.decode(t)) for t in tokens}
  new_tokens, preds = controller.generate(state, nb201, tokens[:20], 25, seen)
  assert new_tokens.shape == (25, nb201.length) and preds.shape == (25,)
  hashes = [nb201.arch_hash(nb201.decode(t)) for t in new_tokens]
  assert len(set(hashes)) == 25 and not set(hashes) & seen
  np.testing.assert_allclose(preds, controller.predict(state, new_tokens), rtol=1e-5)
  # Asking for more than can be found within the step sizes returns fewer, not an error.
  few, _ = controller.generate(state, nb201, tokens[:1], 1000, seen, max_step_size=2)
  assert len(few) <= 2


def test_target_transforms():
  scores = np.array([3.0, 1.0, 2.0, 2.0])
  np.testing.assert_allclose(train_lib.transform_targets(scores, "minmax", True),
                             [1.0, 0.0, 0.5, 0.5])
  np.testing.assert_allclose(train_lib.transform_targets(scores, "minmax", False),
                             [0.0, 1.0, 0.5, 0.5])
  np.testing.assert_allclose(train_lib.transform_targets(scores, "rank", True),
                             [1.0, 0.0, 0.5, 0.5])
  standardized = train_lib.transform_targets(scores, "standardize", True)
  assert standardized[0] > standardized[2] > standardized[1] and standardized[2] == 0.5
  np.testing.assert_allclose(train_lib.transform_targets(np.ones(3), "minmax", True), 0.5)
  with pytest.raises(ValueError, match="finite"):
    train_lib.transform_targets(np.array([1.0, np.nan]), "rank", True)


def test_metrics_match_scipy_and_brute_force():
  rng = np.random.default_rng(0)
  targets = rng.integers(0, 10, 60).astype(float)  # With ties.
  preds = targets + rng.normal(0, 3, 60)
  preds[:5] = preds[5]  # Ties in the predictions too.
  expected_tau = stats.kendalltau(preds, targets).statistic
  np.testing.assert_allclose(float(controller.metrics.kendall_tau(preds, targets)),
                             expected_tau, rtol=1e-5)
  correct = total = 0
  for i in range(60):
    for j in range(i + 1, 60):
      if targets[i] != targets[j]:
        total += 1
        correct += (preds[i] - preds[j]) * (targets[i] - targets[j]) > 0
  np.testing.assert_allclose(float(controller.metrics.pairwise_accuracy(preds, targets)),
                             correct / total, rtol=1e-6)
  decoded = np.array([[1, 2, 3], [1, 2, 4], [5, 6, 7]])
  tokens = np.array([[1, 2, 3], [1, 3, 3], [1, 2, 3]])
  assert float(controller.metrics.reconstruction_rate(decoded, tokens)) == pytest.approx(1 / 3)
  assert float(controller.metrics.mean_hamming_distance(decoded, tokens)) == pytest.approx(
      (0 + 2 + 3) / 3)
  assert float(model_lib.normalise(jnp.zeros(3))[0]) == 0.0


def test_orbax_checkpoint_resume_equals_uninterrupted(nb201, tmp_path):
  config = controller.default_config("nb201")
  tokens = sample_tokens(nb201, 50)
  scores = np.random.default_rng(0).random(50)
  state = controller.init(jax.random.key(0), nb201, config)
  state, _ = controller.fit(state, tokens, scores, jax.random.key(1), epochs=2)
  uninterrupted, _ = controller.fit(state, tokens, scores, jax.random.key(2), epochs=2)
  with checkpoint.Checkpointer(str(tmp_path / "ckpt")) as checkpointer:
    checkpointer.save(1, state)
    restored, _ = checkpointer.restore(controller.init(jax.random.key(9), nb201, config))
  resumed, _ = controller.fit(restored, tokens, scores, jax.random.key(2), epochs=2)
  jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.params, uninterrupted.params)
  assert int(resumed.step) == int(uninterrupted.step)
