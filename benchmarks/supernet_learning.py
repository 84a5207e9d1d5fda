"""How well the quickstart's supernet learns: train accuracy per epoch and the pool's scores.

  python benchmarks/supernet_learning.py                              # configs/quickstart.py
  python benchmarks/supernet_learning.py supernet.learning_rate=0.1 search.pool_size=1

Builds the supernet evaluator of ``configs/quickstart.py`` (with ``section.field=value``
overrides), draws the search's initial pool (``numpy_rng(seed, 0)``, as the nao
strategy does), trains the shared weights for ``supernet.epochs`` epochs on it
(one pool arch per step), printing each epoch's mean train loss and accuracy,
then scores the whole pool on the fixed validation images and prints the mean,
best and worst score. No files are written; figures go to
``benchmarks/results/supernet_learning.md`` by hand, with the command.
"""

from __future__ import annotations

import os
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from configs import quickstart  # noqa: E402
from nao_jax import evaluators  # noqa: E402
from nao_jax import strategies  # noqa: E402
from nao_jax.models import supernet as supernet_lib  # noqa: E402


def main(overrides: list[str]) -> None:
  config = quickstart.get_config()
  for override in overrides:
    field, _, text = override.partition("=")
    section, _, name = field.rpartition(".")
    target = config[section] if section else config
    kind = type(target[name])
    target[name] = text.lower() in ("1", "true") if kind is bool else kind(text)
  evaluator = evaluators.build_plain(config)
  pool = strategies.sample_unseen(evaluator.space, strategies.numpy_rng(config.seed, 0),
                                  config.search.pool_size, set())
  arrays = supernet_lib.arch_arrays(evaluator.space, pool)
  started = time.time()
  for epoch in range(1, config.supernet.epochs + 1):
    metrics = evaluator.train_steps(arrays, epoch * evaluator.steps_per_epoch)
    print(f"epoch {epoch} loss {metrics['loss']:.3f} acc {metrics['accuracy']:.3f} "
          f"{time.time() - started:.0f}s", flush=True)
  scores = evaluator.score(pool)
  print(f"pool of {len(pool)} scores: mean {scores.mean():.3f} max {scores.max():.3f} "
        f"min {scores.min():.3f}")


if __name__ == "__main__":
  main(sys.argv[1:])
