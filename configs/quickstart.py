"""The NAO-WS pipeline of configs/cifar.py shrunk to run on any CPU with the bundled digits.

Command:
  python -m nao_jax.main --config=configs/quickstart.py --workdir=/tmp/q

Searches a pool of 20 ws5 archs with a 5-cell, C=8 supernet on scikit-learn's
8x8 digits (no download) for 4 epochs (2 controller rounds), re-ranks the top
2 by one epoch of training each, then trains the winner for 3 epochs and
prints its test accuracy; plots in /tmp/q/plots. Expected: a few minutes on a
2-core CPU (most of it XLA compilation), a test accuracy well above the 10% of
chance. Rerun the same command after a kill: it resumes.

``configs/quickstart.py:small`` (the test suite's reduced form) uses 2-node
cells and fewer archs and epochs.
"""

import importlib.util
import os

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg not in (None, "", "small"):
    raise ValueError(f"configs/quickstart.py:{arg}: the variant must be empty or 'small'.")
  spec = importlib.util.spec_from_file_location(
      "nao_ws_cifar_config", os.path.join(os.path.dirname(__file__), "cifar.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.data.name = "digits"
  config.data.valid_size = 300
  s = config.supernet
  s.num_cells, s.features, s.epochs, s.eval_images, s.ckpt_every_steps = 1, 8, 4, 200, 10
  s.learning_rate = 0.05
  config.search.update(pool_size=20, eval_every=2, new_per_round=8, top_k=10, rerank_top=2)
  config.nao.controller.train.epochs = 30
  config.nao.controller.generate.max_step_size = 10
  config.random.round_size = 8
  config.reinforce.round_size = 8
  for child, epochs in ((config.rerank, 1), (config.final, 3)):
    child.model.update(num_cells=1, features=8)
    child.train.update(epochs=epochs, learning_rate=0.05, eval_batch_size=100, log_every_steps=10)
  config.final.split = "search"  # Digits: keep the valid split; test set reported.
  if arg == "small":
    config.space.nodes = 2
    s.num_cells, s.features, s.epochs = 0, 4, 2
    s.ckpt_every_steps = 5
    s.batch_size = 64
    config.data.valid_size = 200
    s.eval_images = 64
    config.search.update(pool_size=8, eval_every=1, new_per_round=3, top_k=4, rerank_top=1)
    config.nao.controller.train.epochs = 5
    for child in (config.rerank, config.final):
      child.model.update(num_cells=1, features=4)
      child.train.update(epochs=1)
  return config
