"""Supernet train-step images/s and the time to score a pool of archs (NAO-WS, reference §6.1).

  PYTHONPATH=. python benchmarks/supernet.py [--num_cells=3] [--features=20] [--batch=64]
      [--steps=5] [--pool=600] [--score_archs=24] [--eval_images=500]

Trains the supernet (``3 * num_cells + 2`` cells) on random images with a new
random arch every step, then scores ``score_archs`` random archs on
``eval_images`` fixed images in one compiled call and projects the time of the
whole ``pool``. On a GPU it also projects the full ``configs/cifar.py`` search
(150 epochs of 45,000 images, the pool scored every 30 epochs, 5 times).

``--floor_archs=K`` also measures, for the first ``K`` pool archs, the same-size
*fixed* child network of that arch (no weight sharing, no op switch, one
compilation per arch): the child trainer's train step with drop path (and its
default augmentation) and its forward on the ``eval_images`` in
batch-statistics mode. A supernet built from the same ops on this backend does
not run them faster, so these rows are the device's floor for the two targets
and the supernet's overhead is its ratio to them.

Reference (§10, PyTorch on this 2-core CPU): 31.5 train images/s; 8.2 s to score
one arch on 500 images (82 minutes for 600). ``--reuse_malloc`` first makes
glibc keep freed memory for reuse (``nao_jax/host_memory.py``). Writes
benchmarks/results/supernet.md.
"""

import argparse
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import child_throughput  # benchmarks/child_throughput.py
from nao_jax import data as data_lib
from nao_jax import host_memory
from nao_jax import models
from nao_jax import spaces
from nao_jax.evaluators import supernet as evaluator_lib
from nao_jax.models import supernet as supernet_lib
from nao_jax.training import step as step_lib

REFERENCE_TRAIN = 31.5  # images/s
REFERENCE_SCORE = 8.2  # s per arch on 500 images
SEARCH_EPOCHS, TRAIN_IMAGES, SCORINGS = 150, 45_000, 5


def random_data(train_images: int, valid_images: int, image_size: int = 32) -> data_lib.ImageData:
  rng = np.random.default_rng(0)

  def split(n):
    return data_lib.Split(rng.integers(0, 256, (n, image_size, image_size, 3), dtype=np.uint8),
                          rng.integers(0, 10, n).astype(np.int32))

  return data_lib.ImageData(name="random", num_classes=10, train=split(train_images),
                            valid=split(valid_images), test=None,
                            mean=(0.5,) * 3, std=(0.25,) * 3)


def fixed_network(space, arch, config, steps: int, images: jnp.ndarray) -> tuple[float, float]:
  """``(train images/s, forward s)`` of the fixed child network of ``arch`` with the
  supernet's size (``config``), on one device: ``steps`` train steps at
  ``config.batch_size`` and the batch-statistics forward of ``images``."""
  settings = dict(num_cells=config.num_cells, features=config.features, auxiliary=False,
                  dropout_keep_prob=1.0)
  model = models.from_space(space, arch, drop_path_keep_prob=config.drop_path_keep_prob,
                            **settings)
  train, _, state, batch, key = child_throughput.setup_model(model, config.batch_size)
  state, train_rate, _ = child_throughput.time_train(train, state, batch, key, steps)

  plain = models.from_space(space, arch, drop_path_keep_prob=1.0, **settings)
  state = step_lib.unreplicate(state)
  variables = {"params": state.params, "batch_stats": state.batch_stats}

  @jax.jit
  def predict(variables, images):
    (logits, _), _ = plain.apply(variables, images, train=True, mutable=["batch_stats"])
    return jnp.argmax(logits, -1)

  jax.block_until_ready(predict(variables, images))
  start = time.time()
  jax.block_until_ready(predict(variables, images))
  return train_rate, time.time() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num_cells", type=int, default=3)
  parser.add_argument("--features", type=int, default=20)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--pool", type=int, default=600)
  parser.add_argument("--score_archs", type=int, default=24)
  parser.add_argument("--eval_images", type=int, default=500)
  parser.add_argument("--floor_archs", type=int, default=0,
                      help="also time the fixed child networks of this many pool archs")
  parser.add_argument("--out", default="benchmarks/results/supernet.md")
  parser.add_argument("--reuse_malloc", action="store_true",
                      help="make glibc keep freed memory for reuse (nao_jax/host_memory.py)")
  args = parser.parse_args()
  if args.reuse_malloc:
    host_memory.reuse_freed_memory()  # Before JAX starts, which it must.

  space = spaces.get("nasnet", nodes=5, ops="ws5")
  config = ml_collections.ConfigDict(evaluator_lib.default_config())
  config.update(num_cells=args.num_cells, features=args.features, batch_size=args.batch,
                eval_images=args.eval_images)
  data = random_data(args.batch * (args.steps + 1), args.eval_images)
  load_before = os.getloadavg()
  start = time.time()
  evaluator = evaluator_lib.SupernetEvaluator(space, data, config, seed=0)
  pool_archs = space.sample(np.random.default_rng(1), args.pool)
  pool = supernet_lib.arch_arrays(space, pool_archs)
  evaluator.train_steps(pool, 1)
  jax.block_until_ready(evaluator.state)
  compile_train = time.time() - start
  start = time.time()
  evaluator.train_steps(pool, 1 + args.steps)
  jax.block_until_ready(evaluator.state)
  train_rate = args.steps * args.batch / (time.time() - start)

  archs = pool[:args.score_archs]
  start = time.time()
  evaluator.score_arrays(archs)
  compile_score = time.time() - start
  start = time.time()
  evaluator.score_arrays(archs)
  per_arch = (time.time() - start) / len(archs)
  pool_minutes = per_arch * args.pool / 60
  reference_pool_minutes = REFERENCE_SCORE * args.eval_images / 500 * args.pool / 60

  device = jax.local_devices()[0]
  cells = 3 * args.num_cells + 2
  lines = [
      f"# Supernet ({child_throughput.device_name(device)}, x{len(evaluator.devices)}, {cells} cells, "
      f"C={args.features}, batch {args.batch}, float32)", "",
      f"load average before: {load_before}", "",
      "| measure | nao_jax | reference | ratio |", "|---|---|---|---|",
      f"| train images/s | {train_rate:.1f} | {REFERENCE_TRAIN} | "
      f"{train_rate / REFERENCE_TRAIN:.2f}x |",
      f"| score one arch on {args.eval_images} images (s) | {per_arch:.3f} | "
      f"{REFERENCE_SCORE * args.eval_images / 500:.1f} | "
      f"{REFERENCE_SCORE * args.eval_images / 500 / per_arch:.1f}x faster |",
      f"| score the {args.pool}-arch pool (min, projected from {len(archs)}) | "
      f"{pool_minutes:.2f} | {reference_pool_minutes:.0f} | "
      f"{reference_pool_minutes / pool_minutes:.1f}x faster |",
      f"| compile: train step / scoring (s) | {compile_train:.0f} / {compile_score:.0f} | | |",
  ]
  for k, arch in enumerate(pool_archs[:args.floor_archs]):
    rate, forward = fixed_network(space, arch, config, args.steps, evaluator.eval_images)
    lines += [f"| fixed network of pool arch {k}: train images/s | {rate:.1f} | | |",
              f"| fixed network of pool arch {k}: forward of {args.eval_images} images (s) | "
              f"{forward:.3f} | | |"]
    print(lines[-2], lines[-1], sep="\n", flush=True)
  if device.platform != "cpu":
    search_hours = (SEARCH_EPOCHS * TRAIN_IMAGES / train_rate
                    + SCORINGS * per_arch * args.pool) / 3600
    lines.append(f"| projected configs/cifar.py search (h) | {search_hours:.2f} | 7.5 (V100) | |")
  lines += ["", f"load average after: {os.getloadavg()} (2 shared cores on the CPU machine: "
            "numbers are pessimistic when others run)", "",
            "command: PYTHONPATH=. python benchmarks/supernet.py " + " ".join(
                f"--{k}" if v is True else f"--{k}={v}"
                for k, v in vars(args).items() if k != "out" and v is not False)]
  child_throughput.write_result(args.out, lines)


if __name__ == "__main__":
  main()
