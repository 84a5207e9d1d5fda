"""NAO-WS on Penn Treebank (reference §6.4): the recurrent cell search, then the winner's training.

Command:
  python -m nao_jax.main --config=configs/ptb.py --workdir=/tmp/nao_ws_ptb \
      [--config.strategy=random | evolution | reinforce] [--config.final.enabled=False]

Search: a pool of 1,000 random cells of the ``rnn`` space (11 nodes, NAO-WS
activation order); a shared-weight language model (emb = nhid = 300, SGD lr
0.25, clip 10, batch 256, bptt 35, the reference's dropouts) trains 1,000
epochs, one pool arch per step; every 200 epochs every arch is scored by its
validation perplexity on the same windows (the whole validation stream), the
controller is retrained and up to 300 new cells replace the worst. The top 5 are
re-ranked by 10 epochs of the final recipe each (best validation perplexity),
then the winner is trained as configs/ptb_final.py (hidden 850, 4000 epochs) and
its test perplexity reported. Kill it at any time and rerun: it resumes exactly.

Expected: the reference's NAO-WS-PTB reaches test perplexity 56.6. Projected
times on the 2-core CPU (GPU figures pending): benchmarks/results/ptb.md.

Small variant (CPU, a couple of minutes; the bundled valid/test files only, as
configs/ptb_final.py:small: trains on ptb.valid.txt without its last 370 lines,
validates on those, tests on ptb.test.txt with unseen words read as <unk>):
  python -m nao_jax.main --config=configs/ptb.py:small --workdir=/tmp/ptb_ws_small
4-node cells, a pool of 8 scored after each of 2 supernet epochs (hidden 32),
the best 2 re-ranked by 1 epoch each, the winner trained as ptb_final:small
(6 epochs). Results: benchmarks/results/ptb.md.
"""

import importlib.util
import os

import ml_collections

from nao_jax import controller
from nao_jax import strategies
from nao_jax.evaluators import rnn_supernet


def _final_config(arg):
  """configs/ptb_final.py's config (``arg``: None or 'small')."""
  spec = importlib.util.spec_from_file_location(
      "nao_ptb_final_config", os.path.join(os.path.dirname(__file__), "ptb_final.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def _child(final, epochs):
  """A child-training section (``model``, ``train``, ``ckpt``) of the ptb job."""
  child = ml_collections.ConfigDict({name: final[name].to_dict()
                                     for name in ("model", "train", "ckpt")})
  child.train.epochs = epochs
  return child


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """``arg``: None for the full search, ``small`` for the CPU variant."""
  if arg not in (None, "", "small"):
    raise ValueError(f"configs/ptb.py:{arg}: the variant must be empty or 'small'.")
  small = arg == "small"
  final = _final_config("small" if small else None)
  config = ml_collections.ConfigDict()
  config.job = "nao_ws"
  config.seed = 1267
  # nao | random (Random-WS) | evolution | reinforce | a registered one.
  config.strategy = "nao"
  config.evaluator = dict(name="rnn_supernet")  # Reads space, data, supernet and search.
  config.space = dict(nodes=11, activations="nao_ws")
  config.data = final.data.to_dict()  # The corpus of the search and of the winner's training.
  config.supernet = rnn_supernet.default_config()
  config.search = dict(pool_size=1000, eval_every=200, new_per_round=300, rerank_top=5)
  config.nao = strategies.default_config("nao", space_name="rnn")
  # The reference's selection: the first unseen cells decoded from the top 100 with
  # step sizes up to 30; the predictor's best one-token neighbours of the top 5
  # fill the round when they run out.
  config.nao.update(top_k=100, candidates_per_round=0, neighbours_of_top=5, max_step_size=30)
  config.nao.controller = controller.default_config("rnn")  # The reference's epochs.
  config.nao.controller.encoder.dropout = 0.1  # NAO-WS RNN: dropout on the embeddings.
  for name in ("random", "evolution", "reinforce", "local", "bananas", "gcn"):
    config[name] = strategies.default_config(name)
  # Re-ranking: the final recipe for 10 epochs; then the winner's whole training.
  config.rerank = _child(final, 10)
  config.final = _child(final, final.train.epochs)
  config.final.enabled = True

  if small:
    config.space.nodes = 4
    config.supernet.update(hidden_size=32, batch_size=16, bptt=20, epochs=2, eval_batch_size=10,
                           eval_windows=4, dropout=0.2, dropout_x=0.2, dropout_h=0.1,
                           dropout_i=0.1, learning_rate=20.0, clip_norm=0.25, ckpt_every_steps=25,
                           log_every_steps=25)
    config.search.update(pool_size=8, eval_every=1, new_per_round=3, rerank_top=2)
    config.nao.update(top_k=4, max_step_size=10)
    config.nao.controller.train.epochs = 5
    config.evolution.update(population=8, tournament=3)
    config.rerank.train.update(epochs=1, asgd_epoch=0)
  return config
