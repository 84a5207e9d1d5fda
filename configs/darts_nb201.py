"""DARTS on the NAS-Bench-201 cell, CIFAR-10 (Dong & Yang 2020's DARTS baseline).

Command:
  python -m nao_jax.main --config=configs/darts_nb201.py --workdir=/tmp/darts_nb201 \
      [--config.darts.order=1]

Search: one cell's architecture parameters (6 edges x 5 ops) shared by the 15
cells of NAS-Bench-201's network (C=16, 5 cells per stage), 50 epochs, batch
64, on CIFAR-10's training set split 25k train / 25k valid as the benchmark's
``cifar10-valid``; weights SGD 0.025 -> 0.001 cosine, momentum 0.9, wd 5e-4
(the benchmark's search setting), clip 5; alphas Adam 3e-4, betas (0.5, 0.999),
wd 1e-3; second order by default. The found cell (argmax op per edge, ``none``
included) is looked up in nasbench201/nb201_acc.npz and its ``c10_test_200``
written to best_arch.json. Kill it and rerun the same command: it resumes exactly.

Expected: the benchmark's paper reports that DARTS collapses to a cell of skip
connections (54.30% CIFAR-10 test for both orders); our CIFAR-10 figure is
not measured yet.

``configs/darts_nb201.py:small`` (tests; a CPU in minutes): digits at 8x8,
1 cell per stage of C=4, 2 epochs; the found cell's table accuracy is CIFAR-10's.
Train the found cell: ``--config=configs/cifar_final.py:small
--config.arch=/tmp/darts_nb201/best_arch.json``.
"""

import ml_collections

from nao_jax.oneshot import darts


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """``arg``: None (CIFAR-10) or 'small' (digits, for tests)."""
  if arg not in (None, "", "small"):
    raise ValueError(f"configs/darts_nb201.py:{arg}: the variant must be empty or 'small'.")
  config = ml_collections.ConfigDict()
  config.job = "darts"
  config.seed = 0
  config.space = dict(name="nb201")
  config.data = dict(name="cifar10", data_dir="", download=True, split="search",
                     valid_size=25000, split_seed=0)
  config.darts = darts.default_config()
  config.darts.update(num_cells=5, features=16, weight_decay=5e-4)
  if arg == "small":
    config.data.update(name="digits", image_size=8, valid_size=600)
    config.darts.update(num_cells=1, features=4, epochs=2, batch_size=32, pad=1, flip=False,
                        ckpt_every_steps=20)
  return config
