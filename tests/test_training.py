"""Child training: pmap over 8 fake devices == 1 device, optimiser, resume, NaN guard."""

import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nao_jax import models
from nao_jax import spaces
from nao_jax.training import preemption
from nao_jax.training import step as step_lib
from tests.conftest import tensorboard_scalars


TINY_ARCH = ("normal[n0=conv_3x3(s0)+identity(s1) n1=avg_pool_3x3(n0)+max_pool_2x2(s1)] "
             "reduction[n0=conv_1x3_3x1(s0)+avg_pool_2x2(s1) n1=identity(s0)+conv_1x1(n0)]")


def tiny_model(**settings):
  """A 2-node-cell network of the nao11 space, N=1, F=4 (compiles in seconds)."""
  space = spaces.get("nasnet", nodes=2, ops="nao11")
  arch = space.from_string(TINY_ARCH)
  settings = dict(num_cells=1, features=4, dropout_keep_prob=1.0, drop_path_keep_prob=1.0,
                  **settings)
  return models.from_space(space, arch, **settings)


def test_pmap_over_8_devices_equals_one_device_with_the_whole_batch():
  assert jax.local_device_count() == 8
  model = tiny_model()
  tx = step_lib.make_optimizer()
  hyper = step_lib.Hyper(mean=(0.5,) * 3, std=(0.25,) * 3, learning_rate=0.1)
  state = step_lib.create_train_state(model, tx, jax.random.key(0))
  rng = np.random.default_rng(0)
  batch = {"images": rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8),
           "labels": rng.integers(0, 10, (16,)).astype(np.int32)}
  key = jax.random.key(1)
  results = []
  for devices in (jax.local_devices()[:1], jax.local_devices()):
    n = len(devices)
    train, _ = step_lib.pmapped_steps(model, tx, hyper, step_lib.Length(10, 5), devices)
    sharded = jax.tree.map(lambda x: x.reshape(n, -1, *x.shape[1:]), batch)
    new_state, metrics = train(step_lib.replicate(state, devices), sharded,
                                   step_lib.replicate(key, devices))
    results.append((jax.tree.map(lambda x: np.asarray(x[0]), new_state),
                    jax.tree.map(lambda x: float(x[0]), metrics)))
  (one, one_metrics), (eight, eight_metrics) = results
  assert one_metrics["loss"] == pytest.approx(eight_metrics["loss"], rel=1e-5)
  assert one_metrics["l2_updates"] > 0
  for tree_one, tree_eight in [(one.params, eight.params), (one.batch_stats, eight.batch_stats)]:
    for (path, a), (_, b) in zip(jax.tree_util.tree_flatten_with_path(tree_one)[0],
                                 jax.tree_util.tree_flatten_with_path(tree_eight)[0], strict=True):
      np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5, err_msg=jax.tree_util.keystr(path))
  # The step changed the BatchNorm statistics (they are not the initial 0 / 1).
  assert np.abs(one.batch_stats["stem_norm"]["bn"]["mean"]).max() > 1e-3


def test_train_step_fed_its_own_output_traces_once(monkeypatch):
  traces = []
  original = step_lib.train_step

  def counting_step(*args, **kwargs):
    traces.append(1)
    return original(*args, **kwargs)

  monkeypatch.setattr(step_lib, "train_step", counting_step)
  model = tiny_model()
  # A learning rate no other test uses: pmapped_steps caches per settings.
  hyper = step_lib.Hyper(mean=(0.5,) * 3, std=(0.25,) * 3, learning_rate=0.0123)
  devices = jax.local_devices()[:2]
  key = step_lib.replicate(jax.random.key(1), devices)
  batch = {"images": np.zeros((2, 4, 32, 32, 3), np.uint8), "labels": np.zeros((2, 4), np.int32)}
  # A second run of the same network (another length, a fresh optimiser object
  # with equal settings) reuses the first run's trace.
  updates = []
  for epochs in (10, 3):
    tx = step_lib.make_optimizer()
    train, _ = step_lib.pmapped_steps(model, tx, hyper, step_lib.Length(epochs, 1), devices)
    state = step_lib.replicate(step_lib.create_train_state(model, tx, jax.random.key(0)), devices)
    for _ in range(3):
      state, metrics = train(state, batch, key)
    assert int(state.step[0]) == 3 and int(state.step[1]) == 3
    updates.append(float(metrics["l2_updates"][0]))
  assert len(traces) == 1
  # The length reaches the step: 3 epochs ramp the rate down faster than 10.
  assert updates[1] != pytest.approx(updates[0])


@pytest.mark.parametrize("count", [1, 2, 8])
def test_unreplicate_undoes_replicate_on_any_number_of_devices(count):
  tree = {"w": np.arange(6.0).reshape(2, 3), "step": np.int32(7)}
  back = step_lib.unreplicate(step_lib.replicate(tree, jax.local_devices()[:count]))
  assert back["w"].shape == (2, 3) and back["step"].shape == ()
  np.testing.assert_array_equal(back["w"], tree["w"])
  assert int(back["step"]) == 7


def test_replicate_and_unreplicate_compile_nothing_and_keep_prng_keys(caplog):
  devices = jax.local_devices()[:2]
  tree = {f"w{i}": np.full((i + 1, 3), i, np.float32) for i in range(6)}
  with jax.log_compiles(), caplog.at_level("WARNING"):
    replicated = step_lib.replicate(tree, devices)
    back = step_lib.unreplicate(replicated)
  assert not [r for r in caplog.records if "Finished XLA compilation" in r.getMessage()]
  assert replicated["w2"].shape == (2, 3, 3)
  for name, leaf in tree.items():
    np.testing.assert_array_equal(back[name], leaf)
  key = jax.random.fold_in(jax.random.key(3), 5)
  replicated = step_lib.replicate(key, devices)
  assert replicated.shape == (2,) and jax.dtypes.issubdtype(replicated.dtype, jax.dtypes.prng_key)
  np.testing.assert_array_equal(jax.random.key_data(step_lib.unreplicate(replicated)),
                                jax.random.key_data(key))


def test_drop_path_keep_probability_follows_the_reference_formula():
  from nao_jax.models import cells
  num_cells, keep, total = 20, 0.8, 1000
  for cell in (0, 7, 19):
    for step in (0, 499, 999):
      cell_keep = 1 - (cell + 1) / num_cells * (1 - keep)
      expected = 1 - (step + 1) / total * (1 - cell_keep)
      got = float(cells.drop_path_keep_prob(cell, num_cells, keep, jnp.int32(step), total))
      assert got == pytest.approx(expected, abs=1e-6)
  x = jnp.ones((20000, 1, 1, 1))
  noise = cells.drop_path_noise(jax.random.key(0), 3, 20000)
  assert noise.shape == (3, 20000) and not np.allclose(noise[0], noise[1])
  dropped = cells.drop_path(x, jnp.float32(0.7), noise[0])
  np.testing.assert_allclose(np.unique(np.asarray(dropped)), [0.0, 1 / 0.7], rtol=1e-6)
  assert float(jnp.mean(dropped > 0)) == pytest.approx(0.7, abs=0.01)


def test_cosine_schedule_is_stepped_per_epoch_and_optimizer_matches_pytorch_sgd():
  length = step_lib.Length(600, 10)
  def rate(step):
    return float(step_lib.cosine_learning_rate(0.025, step, length))
  assert rate(0) == pytest.approx(0.025) and rate(9) == pytest.approx(0.025)
  assert rate(10) == pytest.approx(0.0125 * (1 + np.cos(np.pi / 600)))
  assert rate(3000) == pytest.approx(0.0125, rel=1e-5)
  # Traced length: one compiled function for any run length, same values.
  traced = jax.jit(lambda step, epochs, per_epoch: step_lib.cosine_learning_rate(
      0.025, step, step_lib.Length(epochs, per_epoch)))
  assert float(traced(10, 600, 10)) == pytest.approx(rate(10), rel=1e-6)
  assert float(traced(10, 20, 10)) == pytest.approx(0.0125 * (1 + np.cos(np.pi / 20)), rel=1e-6)
  tx = step_lib.make_optimizer(momentum=0.9, weight_decay=0.01, clip_norm=5.0)
  params = {"w": jnp.array([1.0, -2.0])}
  grads = {"w": jnp.array([30.0, 40.0])}  # norm 50 -> clipped to 5: [3, 4].
  state = tx.init(params)
  buffer = np.zeros(2)
  p = np.array([1.0, -2.0])
  for _ in range(2):  # PyTorch: g = clip(g) + wd * p; buf = 0.9 buf + g; p -= lr buf.
    params, state, _ = step_lib.apply_sgd(tx, grads, state, params, jnp.float32(0.1))
    buffer = 0.9 * buffer + (np.array([3.0, 4.0]) + 0.01 * p)
    p = p - 0.1 * buffer
  np.testing.assert_allclose(params["w"], p, rtol=1e-6)


def small_config(tmp_path, **train):
  """configs/cifar_final.py:small shrunk to the tiny arch (as a best_arch.json), 2 devices."""
  import importlib.util
  from tests.conftest import REPO
  spec = importlib.util.spec_from_file_location("cifar_final", REPO / "configs" / "cifar_final.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("small")
  space = spaces.get("nasnet", nodes=2, ops="nao11")
  arch_path = tmp_path / "best_arch.json"
  arch_path.write_text(space.to_json(space.from_string(TINY_ARCH)))
  config.arch = str(arch_path)
  config.model.features = 4
  config.train.update(epochs=2, batch_size=128, eval_batch_size=300, num_devices=2,
                      log_every_steps=3, **train)
  return config


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
  """Reuses compiled steps across the runs of this module (same shapes, same code)."""
  previous = (jax.config.jax_compilation_cache_dir,
              jax.config.jax_persistent_cache_min_compile_time_secs)
  jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  yield
  jax.config.update("jax_compilation_cache_dir", previous[0])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", previous[1])


def final_params(workdir):
  from nao_jax.checkpoint import Checkpointer
  with Checkpointer(str(workdir / "checkpoints")) as ckpt:
    step = ckpt.latest_step()
    target = jax.tree.map(np.asarray, restored_structure(workdir))
    state, meta = ckpt.restore(target)
  return step, state, meta


def restored_structure(workdir):
  """The saved state's tree of array metadata (shapes, dtypes)."""
  from nao_jax.checkpoint import Checkpointer
  with Checkpointer(str(workdir / "checkpoints")) as ckpt:
    return ckpt._manager.item_metadata(ckpt.latest_step())["state"]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
  """An uninterrupted 2-epoch run: (results, workdir)."""
  from nao_jax.training import loop
  tmp_path = tmp_path_factory.mktemp("straight")
  return loop.run(small_config(tmp_path), str(tmp_path / "straight")), tmp_path / "straight"


def test_sigterm_saves_and_resume_continues_bit_exactly(tmp_path, monkeypatch, capsys,
                                                         straight_run):
  from nao_jax.training import loop
  straight, straight_dir = straight_run
  assert straight["steps"] == 20 and straight["devices"] == 2
  assert straight["final_test_accuracy"] > 0.1 and straight["best_valid_accuracy"] > 0.1
  assert (straight_dir / "results.json").exists()
  event_files = list((straight_dir / "tb" / "train").iterdir())
  assert len(event_files) == 1  # The test accuracy is written before the writer closes.
  scalars = tensorboard_scalars(event_files[0])
  assert scalars["test/accuracy"] == [(20, pytest.approx(straight["final_test_accuracy"]))]
  assert len(scalars["valid/accuracy"]) == 2

  log = loop._log

  def log_then_term(writer, pending, done, *args):
    log(writer, pending, done, *args)
    if done == 12:  # Mid second epoch (10 steps per epoch).
      signal.raise_signal(signal.SIGTERM)

  monkeypatch.setattr(loop, "_log", log_then_term)
  with pytest.raises(preemption.Preempted, match="step 12"):
    loop.run(small_config(tmp_path), str(tmp_path / "resumed"))
  monkeypatch.setattr(loop, "_log", log)
  resumed = loop.run(small_config(tmp_path), str(tmp_path / "resumed"))
  assert "resumed from checkpoint step 12" in capsys.readouterr().out
  assert resumed["final_test_accuracy"] == straight["final_test_accuracy"]
  assert resumed["best_valid_accuracy"] == straight["best_valid_accuracy"]
  (step_a, state_a, _), (step_b, state_b, _) = (final_params(d) for d in
                                                (straight_dir, tmp_path / "resumed"))
  assert step_a == step_b == 20
  for a, b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b), strict=True):
    np.testing.assert_array_equal(a, b)
  # Rerunning a finished run rewrites results.json (it used to fail on the existing file).
  again = loop.run(small_config(tmp_path), str(tmp_path / "resumed"))
  assert again["final_test_accuracy"] == straight["final_test_accuracy"]


def test_a_crash_loses_at_most_ckpt_every_steps(tmp_path, monkeypatch, capsys, straight_run):
  from nao_jax.training import loop
  straight, straight_dir = straight_run
  config = small_config(tmp_path)
  config.ckpt.every_steps = 4
  log = loop._log

  def log_then_crash(writer, pending, done, *args):
    log(writer, pending, done, *args)
    if done == 9:  # No checkpoint is written here: as if the process died.
      raise RuntimeError("crash")

  monkeypatch.setattr(loop, "_log", log_then_crash)
  with pytest.raises(RuntimeError, match="crash"):
    loop.run(config, str(tmp_path / "crashed"))
  monkeypatch.setattr(loop, "_log", log)
  resumed = loop.run(config, str(tmp_path / "crashed"))
  assert "resumed from checkpoint step 8" in capsys.readouterr().out
  assert resumed["final_test_accuracy"] == straight["final_test_accuracy"]
  (_, state_a, _), (_, state_b, _) = (final_params(d) for d in
                                      (straight_dir, tmp_path / "crashed"))
  for a, b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b), strict=True):
    np.testing.assert_array_equal(a, b)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tmp_path, straight_run):
  import shutil
  from nao_jax.training import loop
  config = small_config(tmp_path)
  workdir = tmp_path / "nan"
  shutil.copytree(straight_run[1], workdir)  # 2 good epochs: checkpoint 20.
  config.train.epochs = 4
  config.train.learning_rate = 1e30
  config.train.clip_norm = 1e30
  with pytest.raises(FloatingPointError, match="last good checkpoint \\(step 20\\)"):
    loop.run(config, str(workdir))
  step, _, _ = final_params(workdir)
  assert step == 20


@pytest.mark.parametrize("network", [pytest.param("nasnet", marks=pytest.mark.slow), "nb201"])
def test_a_bfloat16_step_matches_float32_within_tolerance(network):
  """Same params and batch: bf16 compute (f32 params) gives the f32 loss within 2%
  (bf16 keeps 8 bits of mantissa; measured differences are a fraction of that)."""
  if network == "nasnet":
    build = tiny_model
  else:
    space = spaces.get("nb201")
    build = lambda **kw: models.from_space(  # noqa: E731
        space, space.from_values([3, 1, 2, 3, 4, 1]), **kw)
  tx = step_lib.make_optimizer()
  hyper = step_lib.Hyper(mean=(0.5,) * 3, std=(0.25,) * 3, learning_rate=0.1)
  state = step_lib.create_train_state(build(), tx, jax.random.key(0))
  rng = np.random.default_rng(0)
  batch = {"images": rng.integers(0, 256, (1, 8, 32, 32, 3), dtype=np.uint8),
           "labels": rng.integers(0, 10, (1, 8)).astype(np.int32)}
  devices = jax.local_devices()[:1]
  losses = {}
  for dtype in (jnp.float32, jnp.bfloat16):
    train, _ = step_lib.pmapped_steps(build(dtype=dtype), tx, hyper, step_lib.Length(10, 5),
                                      devices)
    new_state, metrics = train(step_lib.replicate(state, devices), batch,
                               step_lib.replicate(jax.random.key(1), devices))
    losses[dtype] = float(metrics["loss"][0])
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(new_state.params))
  assert losses[jnp.bfloat16] == pytest.approx(losses[jnp.float32], rel=0.02)
