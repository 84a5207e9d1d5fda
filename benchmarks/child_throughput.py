"""Train-step and eval images/s of NAONet-A / NAONet-B (N=6, F=36) on one device.

  PYTHONPATH=. python benchmarks/child_throughput.py [--batch=32] [--dtype=float32] [--steps=5]

Reference (§10, PyTorch on this 2-core CPU, batch 32): NAONet-A 10.5 train /
35 eval images/s; NAONet-B 7.7 / 25. Writes benchmarks/results/child.md.
"""

import argparse
import os
import time

import jax
import numpy as np

from nao_jax import models
from nao_jax.spaces import known
from nao_jax.training import loop
from nao_jax.training import step as step_lib

REFERENCE = {"NAONet-A": (10.5, 35.0), "NAONet-B": (7.7, 25.0)}


def setup(name, batch, dtype="float32", num_cells=6, features=36, image_size=32):
  """``(train, evaluate, state, batch, key)`` of the published network ``name`` on one
  device with a random uint8 batch; the auxiliary head where the images allow it."""
  model = models.from_space(*known.get(name), num_cells=num_cells, features=features,
                            dtype=loop.DTYPES[dtype], auxiliary=image_size >= 32)
  return setup_model(model, batch, image_size)


def setup_model(model, batch, image_size=32):
  """``setup`` for any child network ``model``."""
  tx = step_lib.make_optimizer()
  hyper = step_lib.Hyper(mean=(0.5,) * 3, std=(0.25,) * 3)
  devices = jax.local_devices()[:1]
  train, evaluate = step_lib.pmapped_steps(model, tx, hyper, step_lib.Length(600, 390), devices)
  state = step_lib.replicate(
      step_lib.create_train_state(model, tx, jax.random.key(0), image_size), devices)
  rng = np.random.default_rng(0)
  batch_ = {"images": rng.integers(0, 256, (1, batch, image_size, image_size, 3), dtype=np.uint8),
            "labels": rng.integers(0, 10, (1, batch)).astype(np.int32)}
  key = step_lib.replicate(jax.random.key(1), devices)
  return train, evaluate, state, batch_, key


def time_train(train, state, batch_, key, steps):
  """``(state, train images/s, compile s)``: one compiling step, then ``steps`` timed."""
  start = time.time()
  state, metrics = train(state, batch_, key)
  jax.block_until_ready(metrics)
  compile_s = time.time() - start
  start = time.time()
  for _ in range(steps):
    state, metrics = train(state, batch_, key)
  jax.block_until_ready(metrics)
  return state, steps * len(batch_["labels"][0]) / (time.time() - start), compile_s


def measure(name, batch, dtype, steps):
  train, evaluate, state, batch_, key = setup(name, batch, dtype)
  state, train_rate, compile_s = time_train(train, state, batch_, key, steps)
  eval_batch = dict(batch_, mask=np.ones((1, batch), np.float32))
  jax.block_until_ready(evaluate(state, eval_batch))
  start = time.time()
  for _ in range(steps):
    out = evaluate(state, eval_batch)
  jax.block_until_ready(out)
  eval_rate = steps * batch / (time.time() - start)
  return train_rate, eval_rate, compile_s


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--dtype", default="float32", choices=sorted(loop.DTYPES))
  parser.add_argument("--steps", type=int, default=5)
  args = parser.parse_args()
  device = jax.local_devices()[0]
  lines = [f"# Child network throughput ({device.device_kind}, batch {args.batch}, {args.dtype})", "",
           f"load average before: {os.getloadavg()}", "",
           "| network | train images/s | eval images/s | reference train / eval | speed-up (train) | compile s |",
           "|---|---|---|---|---|---|"]
  for name in ("NAONet-A", "NAONet-B"):
    train_rate, eval_rate, compile_s = measure(name, args.batch, args.dtype, args.steps)
    ref = REFERENCE[name]
    lines.append(f"| {name} | {train_rate:.1f} | {eval_rate:.1f} | {ref[0]} / {ref[1]} | "
                 f"{train_rate / ref[0]:.2f}x | {compile_s:.0f} |")
    print(lines[-1], flush=True)
  lines += ["", f"load average after: {os.getloadavg()} (2 shared cores: numbers are pessimistic "
            "when others run)", "",
            f"command: PYTHONPATH=. python benchmarks/child_throughput.py --batch={args.batch} --dtype={args.dtype} "
            f"--steps={args.steps}"]
  os.makedirs("benchmarks/results", exist_ok=True)
  with open("benchmarks/results/child.md", "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
