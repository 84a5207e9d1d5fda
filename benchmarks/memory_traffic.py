"""The memory traffic floor of scoring one supernet arch: bytes per forward against the copy rate.

  PYTHONPATH=. python benchmarks/memory_traffic.py [--archs=3] [--eval_images=500]

For the first ``archs`` pool archs (``space.sample(rng(1), ...)``, as
``benchmarks/supernet.py``) it compiles the fixed child network at the supernet's
size (11 cells, C=20) and reads XLA's cost analysis of its batch-statistics
forward on ``eval_images`` 32x32 images: FLOPs and bytes accessed (the operand
and result bytes of every op, as if no cache held any of them). It then measures
the host's memory copy rate (numpy ``copyto`` of 400 MB into a preallocated
buffer, best of 5, read + write) and prints the time those bytes take at that
rate: a floor for scoring one arch with these ops unless the caches absorb the
traffic, which activations of ``eval_images * 32 * 32 * 20`` floats (41 MB at
500) largely prevent. Issue 6's target is 0.82 s per arch on 500 images.
Writes benchmarks/results/memory_traffic.md.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import child_throughput  # benchmarks/child_throughput.py
from nao_jax import models
from nao_jax import spaces

COPY_BYTES = 400_000_000


def forward_cost(model, eval_images: int) -> tuple[float, float]:
  """``(FLOPs, bytes accessed)`` of ``model``'s batch-statistics forward."""
  images = jax.ShapeDtypeStruct((eval_images, 32, 32, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)

  def predict(variables, images):
    (logits, _), _ = model.apply(variables, images, train=True, mutable=["batch_stats"])
    return jnp.argmax(logits, -1)

  cost = jax.jit(predict).lower(variables, images).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return cost["flops"], cost["bytes accessed"]


def copy_rate() -> float:
  """Bytes per second read plus written by a large in-memory copy (best of 5)."""
  source = np.ones(COPY_BYTES // 4, np.float32)
  target = np.empty_like(source)
  np.copyto(target, source)  # Fault the target's pages in once.
  times = []
  for _ in range(5):
    start = time.perf_counter()
    np.copyto(target, source)
    times.append(time.perf_counter() - start)
  return 2 * COPY_BYTES / min(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--archs", type=int, default=3)
  parser.add_argument("--eval_images", type=int, default=500)
  parser.add_argument("--out", default="benchmarks/results/memory_traffic.md")
  args = parser.parse_args()

  space = spaces.get("nasnet", nodes=5, ops="ws5")
  rate = copy_rate()
  lines = [f"# Memory traffic of scoring one arch ({child_throughput.device_name(jax.devices()[0])})",
           "", f"copy rate (numpy, {COPY_BYTES // 10**6} MB, read + write, best of 5): "
           f"{rate / 1e9:.1f} GB/s", "",
           f"| pool arch | GFLOP on {args.eval_images} images | GB accessed | "
           "s at the copy rate |", "|---|---|---|---|"]
  for k, arch in enumerate(space.sample(np.random.default_rng(1), args.archs)):
    model = models.from_space(space, arch, num_cells=3, features=20, auxiliary=False,
                              dropout_keep_prob=1.0, drop_path_keep_prob=1.0)
    flops, accessed = forward_cost(model, args.eval_images)
    lines.append(f"| {k} | {flops / 1e9:.1f} | {accessed / 1e9:.1f} | {accessed / rate:.2f} |")
    print(lines[-1], flush=True)
  lines += ["", "command: PYTHONPATH=. python benchmarks/memory_traffic.py "
            f"--archs={args.archs} --eval_images={args.eval_images}"]
  child_throughput.write_result(args.out, lines)


if __name__ == "__main__":
  main()
