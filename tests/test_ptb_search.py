"""NAO-WS on Penn Treebank: the shared-weight recurrent cell against the final model,
the supernet evaluator's scoring and data parallelism, and configs/ptb.py:small end
to end (every strategy, a killed run resumed)."""

import functools
import importlib.util
import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nao_jax import history
from nao_jax import nao_ws
from nao_jax import spaces
from nao_jax.data import ptb
from nao_jax.evaluators import rnn_supernet as evaluator_lib
from nao_jax.models import rnn
from nao_jax.models import rnn_supernet as model_lib
from nao_jax.training import rnn_loop
from tests.conftest import REPO
from tests.conftest import run_cli_until

SPACE = spaces.get("rnn", activations="nao_ws")
SMALL = spaces.get("rnn", nodes=4, activations="nao_ws")


def _load_get_config():
  spec = importlib.util.spec_from_file_location("ptb_search", REPO / "configs" / "ptb.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config


get_config = _load_get_config()
# The end-to-end runs use one device: 8 fake CPU devices on a busy 2-core host can
# miss XLA's 40 s collective rendezvous deadline (the data-parallel path is tested below).
ONE_DEVICE = ("supernet.num_devices=1", "rerank.train.num_devices=1",
              "final.train.num_devices=1")


def small_config():
  """configs/ptb.py:small on one device (``ONE_DEVICE``)."""
  config = get_config("small")
  for section in (config.supernet, config.rerank.train, config.final.train):
    section.num_devices = 1
  return config


def _final_params(shared, space, arch):
  """The final model's weights cut out of the supernet's for ``arch``."""
  count = len(space.activations)
  params = {name: shared[name] for name in ("embedding", "decoder_bias", "w0")}
  for j, node in enumerate(arch.nodes, start=1):
    params[f"w{j}"] = shared[f"w{j}"][node.predecessor * count + node.activation]
  return params


@pytest.mark.parametrize("train", [False, True])
def test_the_supernet_of_an_arch_computes_the_final_models_cell(train):
  arch = SPACE.sample(np.random.default_rng(3), 1)[0]
  final = rnn.RnnLanguageModel(arch=arch, space=SPACE, vocab_size=50, hidden_size=16)
  supernet = model_lib.RnnSupernet(space=SPACE, vocab_size=50, hidden_size=16)
  rng = np.random.default_rng(0)
  tokens = jnp.asarray(rng.integers(0, 50, (4, 7)), jnp.int32)
  hidden = jnp.asarray(rng.normal(size=(4, 16)), jnp.float32)
  final_params = final.init(jax.random.key(0), tokens, hidden)["params"]
  shared = model_lib.shared_from_final(final_params, SPACE, arch,
                                       model_lib.init_params(supernet, 1))
  mask = jnp.asarray([1, 1, 1, 1, 1, 0, 0], jnp.float32)
  rngs = {"dropout": jax.random.key(5)}
  expected = final.apply({"params": final_params}, tokens, hidden, mask, train=train, rngs=rngs)
  found = supernet.apply({"params": shared}, tokens, hidden,
                         jnp.asarray(model_lib.arch_array(SPACE, arch)), mask, train=train,
                         rngs=rngs)
  for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(found), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  if train:
    return
  # Only the arch's blocks get a gradient.
  grads = jax.grad(lambda p: jnp.sum(supernet.apply(
      {"params": p}, tokens, hidden, jnp.asarray(model_lib.arch_array(SPACE, arch)))[0]))(shared)
  count = len(SPACE.activations)
  for j, node in enumerate(arch.nodes, start=1):
    norms = np.abs(np.asarray(grads[f"w{j}"])).sum(axis=(1, 2))
    assert np.flatnonzero(norms).tolist() == [node.predecessor * count + node.activation]


def _corpus(seed=0, train=3000, valid=900, vocab=40):
  rng = np.random.default_rng(seed)
  stream = lambda n: rng.integers(0, vocab, n).astype(np.int32)
  return ptb.Corpus(tuple(f"w{i}" for i in range(vocab)), stream(train), stream(valid),
                    stream(valid))


def _evaluator(num_devices=1, **overrides):
  config = evaluator_lib.default_config()
  config.update(hidden_size=8, batch_size=8, bptt=10, epochs=2, eval_batch_size=4,
                eval_windows=3, learning_rate=2.0, num_devices=num_devices, log_every_steps=5)
  config.update(**overrides)
  return evaluator_lib.RnnSupernetEvaluator(SMALL, _corpus(), config, seed=0)


POOL = model_lib.arch_arrays(SMALL, SMALL.sample(np.random.default_rng(0), 11))


def test_every_arch_is_scored_on_the_same_fixed_windows():
  ev = _evaluator()
  ev.train_steps(POOL, 4)
  windows = [np.asarray(a) for a in ev.eval_data]
  inputs, targets, mask = ptb.eval_windows(ptb.batchify(_corpus().valid, 4), 10)
  for found, expected in zip(windows, (inputs[:3], targets[:3], mask[:3])):
    np.testing.assert_array_equal(found, expected)
  first, again = ev.score_arrays(POOL), ev.score_arrays(POOL)
  np.testing.assert_array_equal(first, again)  # Deterministic.
  np.testing.assert_array_equal(ev.score_arrays(POOL[3:5]), first[3:5])  # Any batch.
  assert len(set(first.tolist())) > len(POOL) // 2  # Different archs, different scores.
  # Each score is the final model's mean NLL on those windows with the arch's weights.
  shared = jax.device_get(jax.tree.map(lambda x: x[0], ev.state.params))
  for index in (0, 7):
    arch = SMALL.from_values(POOL[index].reshape(-1))
    model = rnn.RnnLanguageModel(arch=arch, space=SMALL, vocab_size=40, hidden_size=8)
    total, count = jax.jit(functools.partial(rnn_loop.evaluate_stream, model=model))(
        _final_params(shared, SMALL, arch), *windows)
    assert first[index] == pytest.approx(float(total) / float(count), rel=1e-5)
  evaluations = ev.evaluate([SMALL.from_values(a.reshape(-1)) for a in POOL[:2]])
  assert evaluations[0].score == pytest.approx(-first[0])
  assert evaluations[0].report["supernet_perplexity"] == pytest.approx(np.exp(first[0]))


def test_training_on_4_devices_equals_one_device_with_the_whole_batch():
  assert jax.local_device_count() >= 4
  no_dropout = dict(dropout=0.0, dropout_h=0.0, dropout_x=0.0, dropout_i=0.0)
  one, four = _evaluator(1, **no_dropout), _evaluator(4, **no_dropout)
  losses = [[float(m["loss"][0]) for m in e.train_steps(POOL, 3)] for e in (one, four)]
  np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(one.state.params), jax.tree.leaves(four.state.params)):
    np.testing.assert_allclose(a[0], b[0], rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(one.host_hidden(), four.host_hidden(), rtol=1e-4, atol=1e-6)


def test_an_epoch_ends_with_its_plan_and_save_restore_continues_exactly():
  ev = _evaluator()
  windows = len(ev.plan(0))
  assert sum(length for _, length in ev.plan(0)) == ev.rows.shape[1] - 1
  ev.train_steps(POOL, 4)
  arrays, record = ev.save()
  assert record == {"step": 4, "epoch": 0, "window": 4}
  rest = ev.train_steps(POOL, 1000)
  assert len(rest) == windows - 4 and (ev.epoch, ev.window) == (1, 0)
  resumed = _evaluator()
  resumed.restore(jax.tree.map(np.asarray, arrays), record)
  again = resumed.train_steps(POOL, 1000)
  assert [float(m["loss"][0]) for m in again] == [float(m["loss"][0]) for m in rest]


def test_bad_settings_name_the_field():
  with pytest.raises(Exception, match="eval_windows"):
    _evaluator(eval_windows=-1)
  with pytest.raises(Exception, match="batch_size"):
    _evaluator(batch_size=7, num_devices=2)


# ---- configs/ptb.py:small end to end -------------------------------------------------------


def stable(records):
  """History records without wall-clock figures."""
  return [{k: v for k, v in r.items() if k not in ("time", "cost")} for r in records]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("ptb_small"))
  summary = nao_ws.run(small_config(), workdir)
  return workdir, summary


@pytest.mark.slow
def test_ptb_small_finds_an_rnn_cell_and_trains_it(uninterrupted):
  workdir, summary = uninterrupted
  config = small_config()
  with open(os.path.join(workdir, "best_arch.json")) as f:
    best = json.load(f)
  assert best == summary
  assert best["space"] == "rnn(nodes=4,activations=nao_ws)"
  space = spaces.get("rnn", **config.space)
  arch = space.from_dict({"nodes": best["nodes"]})
  assert space.to_string(arch) == best["string"]
  records = history.read(os.path.join(workdir, "history.jsonl"))
  assert len(records) == config.supernet.epochs * config.search.pool_size
  assert best["hash"] in {r["hash"] for r in nao_ws.last_pool(records)[:2]}
  assert all(r["score"] < 0 for r in records)  # Negative log perplexities.
  with open(os.path.join(workdir, "final", "results.json")) as f:
    final = json.load(f)
  assert final["arch_string"] == best["string"]
  assert best["final_test_perplexity"] == final["test_perplexity"]
  assert 1 < final["test_perplexity"] < 1000 and best["rerank_valid_perplexity"] > 1


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["random", "evolution", "reinforce"])
def test_every_strategy_searches_over_the_rnn_supernet(strategy, tmp_path):
  config = small_config()
  config.strategy = strategy
  config.final.enabled = False
  config.search.rerank_top = 1
  summary = nao_ws.run(config, str(tmp_path))
  records = history.read(os.path.join(tmp_path, "history.jsonl"))
  rounds = [{r["hash"] for r in records if r["round"] == k} for k in (0, 1)]
  assert len(rounds[1] - rounds[0]) == config.search.new_per_round
  assert summary["rerank_valid_perplexity"] > 1


def _run_until(workdir, pattern):
  """configs/ptb.py:small on one device, killed when its output matches ``pattern``
  (``run_cli_until``)."""
  return run_cli_until(["--config=configs/ptb.py:small",
                        *[f"--config.{setting}" for setting in ONE_DEVICE]], workdir, pattern)


@pytest.mark.slow
def test_ptb_small_killed_mid_search_resumes_to_the_same_result(uninterrupted, tmp_path):
  full_workdir, summary = uninterrupted
  workdir = str(tmp_path / "run")
  # After the checkpoint at step 50 of epoch 1; while round 0's pool is scored
  # (checkpointed at step 200); in the re-ranking; in the winner's training.
  for phase in ("rnn supernet step 75 ", "rnn supernet step 2[01]\\d epoch 1",
                "re-ranking 2/", r"winner:[\s\S]*epoch 2 window 100/"):
    assert _run_until(workdir, phase)[0] == -signal.SIGKILL, phase
  assert _run_until(workdir, None)[0] == 0
  log = open(os.path.join(workdir, "out.log")).read()
  assert "resumed at rnn supernet step 50 " in log
  assert (stable(history.read(os.path.join(workdir, "history.jsonl")))
          == stable(history.read(os.path.join(full_workdir, "history.jsonl"))))
  with open(os.path.join(workdir, "best_arch.json")) as f:
    assert json.load(f) == summary
