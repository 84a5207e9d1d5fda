"""Penn Treebank: corpus reader, recurrent cell language model and its final training."""

import importlib.util
import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nao_jax import configuration
from nao_jax.data import ptb
from nao_jax.models import rnn
from nao_jax.spaces import known
from nao_jax.spaces.rnn import RnnArch, RnnNode, RnnSpace
from nao_jax.training import preemption
from nao_jax.training import rnn_loop
from tests.conftest import REPO, SHARED_DATA


def _load_get_config():
  """``configs/ptb_final.py``'s ``get_config``."""
  spec = importlib.util.spec_from_file_location("ptb_final", REPO / "configs" / "ptb_final.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config


get_config = _load_get_config()


def _write_corpus(directory, train="a b c\nb c d\n", valid="c a\n", test="d d b\n"):
  for split, text in (("train", train), ("valid", valid), ("test", test)):
    (directory / f"ptb.{split}.txt").write_text(text)
  return directory


def _data_config(directory, **overrides):
  config = get_config().data
  config.data_dir = str(directory)
  config.download = False
  config.update(overrides)
  return config


def test_vocab_batchify_round_trip(tmp_path):
  corpus = ptb.load(_data_config(_write_corpus(tmp_path)))
  # First appearance in the training file, <eos> after each line's words.
  assert corpus.vocab == ("a", "b", "c", "<eos>", "d")
  words = [corpus.vocab[i] for i in corpus.train]
  assert words == "a b c <eos> b c d <eos>".split()
  assert [corpus.vocab[i] for i in corpus.test] == "d d b <eos>".split()
  rows = ptb.batchify(corpus.train, 3)
  assert rows.shape == (3, 2)  # 8 tokens: the remainder of 2 is dropped.
  np.testing.assert_array_equal(rows.reshape(-1), corpus.train[:6])
  stream = np.arange(2 * 23, dtype=np.int32)
  inputs, targets, mask = ptb.eval_windows(ptb.batchify(stream, 2), 5)
  assert inputs.shape == targets.shape == (5, 2, 5) and mask.sum() == 22
  real = mask.reshape(-1) > 0
  for row in range(2):
    np.testing.assert_array_equal(inputs[:, row].reshape(-1)[real], stream[row * 23:][:22])
    np.testing.assert_array_equal(targets[:, row].reshape(-1)[real], stream[row * 23 + 1:][:22])


def test_window_plan_covers_each_row_once():
  plan = ptb.window_plan(np.random.default_rng([0, 3]), 1000, 35, 20)
  assert plan == ptb.window_plan(np.random.default_rng([0, 3]), 1000, 35, 20)
  starts = [start for start, _ in plan]
  assert starts == list(np.cumsum([0] + [length for _, length in plan[:-1]]))
  assert sum(length for _, length in plan) == 999  # Every token but the last is an input.
  assert all(5 <= length <= 55 for _, length in plan[:-1])


def test_unknown_words_are_an_error_unless_mapped(tmp_path):
  _write_corpus(tmp_path, train="a <unk> b\n", test="a z\n", valid="b\n")
  with pytest.raises(configuration.ConfigError, match="map_unknown") as error:
    ptb.load(_data_config(tmp_path))
  assert error.value.field == "test_split"
  corpus = ptb.load(_data_config(tmp_path, map_unknown=True))
  assert [corpus.vocab[i] for i in corpus.test] == ["a", "<unk>", "<eos>"]
  assert corpus.unknown == 1


@pytest.mark.parametrize("problem, content, message", [
    ("missing directory", None, "not found"),
    ("missing file", None, "lacks"),
    ("empty file", b"", "is empty"),
    ("binary file", b"\x00\x01\xff\xfe" * 10, "not UTF-8"),
    ("no words", b"\n \n\n", "has no words"),
])
def test_bad_files_name_the_field(tmp_path, problem, content, message):
  directory = _write_corpus(tmp_path)
  if problem == "missing directory":
    directory = tmp_path / "absent"
  elif problem == "missing file":
    os.remove(directory / "ptb.test.txt")
  else:
    (directory / "ptb.valid.txt").write_bytes(content)
  with pytest.raises(configuration.ConfigError, match=message) as error:
    with configuration.section("data"):
      ptb.load(_data_config(directory))
  assert str(error.value).startswith("config.data.data_dir: ")


@pytest.mark.parametrize("name", ["NAO-PTB", "NAO-WS-PTB"])
def test_published_cells_have_the_reference_parameter_count(name):
  space, arch = known.get(name)
  model = rnn.RnnLanguageModel(arch=arch, space=space, vocab_size=10000, hidden_size=850)
  # Embedding 10000 x 850 (the decoder's weight, tied), decoder bias 10000,
  # W0 (850 + 850) x 1700, eleven W_j 850 x 1700.
  expected = 10000 * 850 + 10000 + 1700 * 1700 + 11 * 850 * 1700
  assert expected == 27_295_000
  assert rnn.count_params(rnn.abstract_params(model)) == expected


def _numpy_cell(params, nodes, x, h):
  """The cell of reference §1.3 in numpy, written out node by node."""
  sigmoid = lambda v: 1 / (1 + np.exp(-v))
  functions = {"tanh": np.tanh, "relu": lambda v: np.maximum(v, 0), "sigmoid": sigmoid,
               "identity": lambda v: v}
  size = h.shape[-1]
  gates = np.concatenate([x, h], -1) @ params["w0"]
  states = [h + sigmoid(gates[:, :size]) * (np.tanh(gates[:, size:]) - h)]
  for j, (predecessor, activation) in enumerate(nodes, start=1):
    s = states[predecessor]
    gates = s @ params[f"w{j}"]
    states.append(s + sigmoid(gates[:, :size]) * (functions[activation](gates[:, size:]) - s))
  return np.mean(states[1:], axis=0)


@pytest.mark.parametrize("order", ["nao", "nao_ws"])
def test_cell_matches_a_numpy_cell(order):
  space = RnnSpace(activations=order)
  # Every activation id and several predecessors appear.
  arch = RnnArch(tuple(RnnNode(max(0, j - 1 - j % 3), j % 4) for j in range(1, 12)))
  model = rnn.RnnLanguageModel(arch=arch, space=space, vocab_size=7, hidden_size=4)
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda x: rng.normal(0, 0.7, x.shape).astype(np.float32),
                        rnn.abstract_params(model))
  tokens = np.array([[1, 4, 6], [0, 2, 2]], np.int32)
  hidden = rng.normal(0, 1, (2, 4)).astype(np.float32)
  logits, last, out = model.apply({"params": params}, jnp.asarray(tokens), jnp.asarray(hidden))
  nodes = [(node.predecessor, space.activations[node.activation]) for node in arch.nodes]
  h = hidden
  for t in range(3):
    h = _numpy_cell(params, nodes, params["embedding"][tokens[:, t]], h)
    np.testing.assert_allclose(out["raw"][:, t], h, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(last, h, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(logits[:, -1], h @ params["embedding"].T + params["decoder_bias"],
                             rtol=1e-5, atol=1e-5)
  # Padding (mask 0) leaves the hidden state where the real steps left it.
  _, padded, _ = model.apply({"params": params}, jnp.asarray(tokens), jnp.asarray(hidden),
                             jnp.array([1.0, 0.0, 0.0]))
  np.testing.assert_allclose(padded, out["raw"][:, 0], rtol=1e-6)


def _small_config(**train):
  """The ``:small`` variant reading the bundled files; on 2 of the 8 test devices
  (XLA:CPU's collectives over all 8 can stall on a 2-core machine)."""
  config = get_config("small")
  config.data.data_dir = str(SHARED_DATA / "ptb")
  config.data.download = False
  config.train.update(train)
  return config


def _unigram_perplexity(config):
  corpus = ptb.load(config.data)
  counts = np.bincount(corpus.train, minlength=len(corpus.vocab))
  return float(np.exp(-np.mean(np.log(counts[corpus.test] / counts.sum()))))


def test_the_trained_cell_is_a_published_name_or_an_rnn_arch_file(tmp_path):
  space, cell = known.get("NAO-WS-PTB")
  path = tmp_path / "best_arch.json"
  path.write_text(json.dumps({**json.loads(space.to_json(cell)), "score": -5.0}))
  read_space, read_cell = rnn_loop._space_arch(str(path))  # pylint: disable=protected-access
  assert (read_space.signature(), read_cell) == (space.signature(), cell)
  assert rnn_loop._space_arch("NAO-PTB") == known.get("NAO-PTB")  # pylint: disable=protected-access
  nasnet, arch = known.get("NAONet-A")
  path.write_text(nasnet.to_json(arch))
  with pytest.raises(configuration.ConfigError, match="trains rnn cells"):
    rnn_loop._space_arch(str(path))  # pylint: disable=protected-access
  with pytest.raises(configuration.ConfigError, match="NAO-WS-PTB"):
    rnn_loop._space_arch("NAO-C")  # pylint: disable=protected-access


@pytest.mark.slow  # The default run trains PTB models in test_resume_repeats_an_uninterrupted_run.
def test_small_training_beats_the_unigram_model(tmp_path, needs_ptb):
  config = _small_config(num_devices=2)
  results = rnn_loop.run(config, str(tmp_path))
  assert json.loads((tmp_path / "results.json").read_text()) == results
  unigram = _unigram_perplexity(config)
  assert results["test_perplexity"] < 0.6 * unigram, (results, unigram)
  assert results["asgd_epoch"] == config.train.asgd_epoch
  assert (tmp_path / "tb" / "train").is_dir()


def _final_state(workdir):
  steps = sorted(int(p) for p in os.listdir(workdir / "checkpoints") if p.isdigit())
  host = rnn_loop.checkpoint.Checkpointer(str(workdir / "checkpoints"))
  try:
    return host.restore(None, steps[-1])
  finally:
    host.close()


def test_resume_repeats_an_uninterrupted_run(tmp_path, monkeypatch, needs_ptb):
  # Averaged SGD from epoch 2 on; the first 1000 lines train, the rest validate.
  settings = dict(epochs=2, asgd_epoch=1, num_devices=2)

  def resume_config(**changes):
    config = _small_config(**{**settings, **changes})
    config.data.holdout_lines = 2370
    return config

  straight = rnn_loop.run(resume_config(), str(tmp_path / "straight"))
  resumed = tmp_path / "resumed"
  # Preempted (SIGTERM) after window 10 of epoch 1: the hidden state and the
  # window position are saved ...
  bar = rnn_loop.progress_lib.bar

  def preempting_bar(*args, **kwargs):
    progress = bar(*args, **kwargs)
    update, calls = progress.update, []

    def update_then_signal(n):
      calls.append(n)
      if len(calls) == 10:
        os.kill(os.getpid(), signal.SIGTERM)
      return update(n)

    progress.update = update_then_signal
    return progress

  monkeypatch.setattr(rnn_loop.progress_lib, "bar", preempting_bar)
  with pytest.raises(preemption.Preempted):
    rnn_loop.run(resume_config(epochs=1), str(resumed))
  monkeypatch.undo()
  state, meta = _final_state(resumed)
  assert meta["epoch"] == 0 and meta["window"] == 10
  # ... resumed to the end of epoch 1, then rerun with 2 epochs.
  rnn_loop.run(resume_config(epochs=1), str(resumed))
  again = rnn_loop.run(resume_config(), str(resumed))
  for key in ("test_perplexity", "best_valid_perplexity", "steps", "asgd_epoch"):
    assert again[key] == straight[key], key
  (a, _), (b, _) = _final_state(tmp_path / "straight"), _final_state(resumed)
  jax.tree.map(np.testing.assert_array_equal, a, b)
