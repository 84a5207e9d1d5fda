"""Train-step and eval images/s of NAONet-A / NAONet-B (N=6, F=36) on one device.

  PYTHONPATH=. python benchmarks/child_throughput.py [--batch=32] [--dtypes=float32] [--steps=5]
  PYTHONPATH=. python benchmarks/child_throughput.py --batch=128 --dtypes=float32,bfloat16  # GPU

Reference (§10, PyTorch on this 2-core CPU, batch 32): NAONet-A 10.5 train /
35 eval images/s; NAONet-B 7.7 / 25. Issue 5's GPU goal: 600 epochs of NAONet-A
in under 3 hours on one H100.

Besides the rates, each row states the train step's FLOPs per image (XLA's cost
analysis of the lowered step: 2 per multiply-add, padding taps not counted),
the FLOP/s that makes at the measured rate and would make at 1.5x the
reference's rate (issue 5's CPU target), the measured rate as a fraction of the
device's measured matmul rate in the same dtype (a large jitted matrix
product: the practical peak of dense work here), the peak memory (the device's
allocator where it reports one, else the process's resident set) and the time
600 epochs of 50,000 images would take. ``--reuse_malloc`` makes glibc keep
freed memory for reuse in each row's process (``nao_jax/host_memory.py``).
Writes benchmarks/results/child.md.
"""

import argparse
from concurrent import futures
import multiprocessing
import os
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from nao_jax import host_memory
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


def measure(name, batch, dtype, steps, reuse_memory):
  """The figures of one table row: ``name`` in ``dtype`` measured in this fresh
  process, first calling ``host_memory.reuse_freed_memory`` (before JAX starts,
  which it must) if ``reuse_memory``."""
  if reuse_memory:
    host_memory.reuse_freed_memory()
  device = jax.local_devices()[0]
  matmul = matmul_rate(dtype)
  train, evaluate, state, batch_, key = setup(name, batch, dtype)
  flops = step_flops(train, state, batch_, key)
  state, train_rate, compile_s = time_train(train, state, batch_, key, steps)
  eval_batch = dict(batch_, mask=np.ones((1, batch), np.float32))
  jax.block_until_ready(evaluate(state, eval_batch))
  start = time.time()
  for _ in range(steps):
    out = evaluate(state, eval_batch)
  jax.block_until_ready(out)
  eval_rate = steps * batch / (time.time() - start)
  memory, memory_kind = peak_memory(device)
  return dict(device=device_name(device), train_rate=train_rate, eval_rate=eval_rate,
              compile_s=compile_s, flops=flops, matmul=matmul, memory=memory,
              memory_kind=memory_kind)


def device_name(device) -> str:
  """``device``'s kind and, for a CPU, its model, core count and widest vector
  instructions (from ``/proc/cpuinfo`` where there is one): "this 2-core CPU"
  has been an AVX2 AMD EPYC on some days and an AVX-512 Intel Xeon on others."""
  if device.platform != "cpu":
    return device.device_kind
  model, flags = "unknown model", set()
  if os.path.exists("/proc/cpuinfo"):
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
          model = value.strip()
        elif key.strip() == "flags":
          flags = set(value.split())
          break
  vectors = next((isa for isa in ("avx512f", "avx2", "sse4_2") if isa in flags), "no SIMD flags")
  return f"cpu: {model}, {os.cpu_count()} cores, {vectors}"


def measure_alone(*args):
  """``measure(*args)`` in a fresh process: each row has the device memory to
  itself and its own peak."""
  context = multiprocessing.get_context("spawn")
  with futures.ProcessPoolExecutor(1, mp_context=context) as pool:
    return pool.submit(measure, *args).result()


def step_flops(fn, *args):
  """FLOPs of one call of ``fn(*args)``: XLA's cost analysis of its lowered program."""
  analysis = jax.jit(fn).lower(*args).cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older jax: one dict per program
    analysis = analysis[0]
  return float(analysis["flops"])


def matmul_rate(dtype, repeats=5):
  """FLOP/s of the fastest of ``repeats`` jitted square matrix products in
  ``dtype`` on the default device (size 2048 on CPU, else 8192)."""
  size = 2048 if jax.default_backend() == "cpu" else 8192
  a = jnp.ones((size, size), loop.DTYPES[dtype])
  product = jax.jit(lambda a: a @ a)
  jax.block_until_ready(product(a))
  best = float("inf")
  for _ in range(repeats):
    start = time.time()
    jax.block_until_ready(product(a))
    best = min(best, time.time() - start)
  return 2 * size ** 3 / best


def peak_memory(device):
  """``(GiB, what)``: the allocator's peak on ``device``, or the process's peak RSS."""
  stats = device.memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 2 ** 30, "device peak"
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, "process peak RSS"


def row(name, dtype, batch, figures):
  """``figures`` (from ``measure``) as a row of ``main``'s table."""
  reference_train, reference_eval = REFERENCE[name]
  train_rate = figures["train_rate"]
  achieved = train_rate * figures["flops"] / batch
  hours = 600 * 50_000 / train_rate / 3600
  return (f"| {name} | {dtype} | {train_rate:.1f} | {figures['eval_rate']:.1f} | "
          f"{reference_train} / {reference_eval} | {train_rate / reference_train:.2f}x | "
          f"{figures['flops'] / batch / 1e9:.2f} | {achieved / 1e9:.1f} | "
          f"{1.5 * reference_train * figures['flops'] / batch / 1e9:.1f} | "
          f"{figures['matmul'] / 1e9:.0f} | {achieved / figures['matmul']:.0%} | "
          f"{figures['memory']:.2f} ({figures['memory_kind']}) | {hours:.1f} | "
          f"{figures['compile_s']:.0f} |")


def write_result(path: str, lines: list[str]) -> None:
  """Prints ``lines`` and writes them to the results file ``path``."""
  print("\n".join(lines))
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--dtypes", default="float32",
                      help=f"comma-separated compute dtypes, of {sorted(loop.DTYPES)}")
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--reuse_malloc", action="store_true",
                      help="make glibc keep freed memory for reuse (nao_jax/host_memory.py)")
  args = parser.parse_args()
  dtypes = args.dtypes.split(",")
  unknown = sorted(set(dtypes) - set(loop.DTYPES))
  if unknown:
    parser.error(f"--dtypes: unknown {unknown}; choose from {sorted(loop.DTYPES)}")
  rows, device_kind = [], None
  load_before = os.getloadavg()
  for dtype in dtypes:
    for name in ("NAONet-A", "NAONet-B"):
      figures = measure_alone(name, args.batch, dtype, args.steps,
                              args.reuse_malloc)
      device_kind = figures["device"]
      rows.append(row(name, dtype, args.batch, figures))
      print(rows[-1], flush=True)
  lines = [f"# Child network throughput ({device_kind}, batch {args.batch})", "",
           f"load average before: {load_before}", "",
           "| network | dtype | train images/s | eval images/s | reference train / eval | "
           "speed-up (train) | train GFLOP / image | train GFLOP/s | GFLOP/s at 1.5x reference | "
           "matmul GFLOP/s | "
           "% of matmul | peak memory GiB | 600 epochs (h) | compile s |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|", *rows, "",
           f"load average after: {os.getloadavg()} (2 shared cores: numbers are pessimistic "
           "when others run)", "",
           f"command: PYTHONPATH=. python benchmarks/child_throughput.py --batch={args.batch} "
           f"--dtypes={args.dtypes} --steps={args.steps}"
           + (" --reuse_malloc" if args.reuse_malloc else "")]
  write_result("benchmarks/results/child.md", lines)


if __name__ == "__main__":
  main()
