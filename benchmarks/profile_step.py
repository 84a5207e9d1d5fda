"""Where a compiled train step spends its time: XLA op groups by time per step.

  pip install -e ".[profile]"   # xprof, to read the trace
  PYTHONPATH=. python benchmarks/profile_step.py --model=supernet [--num_cells=1]
      [--features=20] [--batch=64] [--image_size=32] [--steps=3] [--top=30]
  PYTHONPATH=. python benchmarks/profile_step.py --model=NAONet-A --num_cells=2 --features=36 --batch=32

Compiles and warms up one train step of the supernet (a new random arch every
step, as ``benchmarks/supernet.py``) or of a published child network (as
``benchmarks/child_throughput.py``), traces ``steps`` more with
``jax.profiler`` (on CPU with ``--xla_cpu_enable_xprof_traceme`` so that every
XLA thunk is traced), and prints per op group (the op's name without its
numeric suffix: ``copy.123`` -> ``copy``) the milliseconds and calls per step
and the share of all op time. Op times of the threads add up, so on several
cores their sum exceeds the wall time.
"""

import argparse
import collections
import glob
import json
import os
import re
import tempfile
import time

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_cpu_enable_xprof_traceme=true").strip()

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

import child_throughput as child_benchmark  # noqa: E402  (benchmarks/child_throughput.py)
import supernet as supernet_benchmark  # noqa: E402  (benchmarks/supernet.py)
from nao_jax import spaces  # noqa: E402
from nao_jax.evaluators import supernet as evaluator_lib  # noqa: E402
from nao_jax.models import supernet as supernet_lib  # noqa: E402
from nao_jax.spaces import known  # noqa: E402

# Trace events that are not XLA ops: runtime scopes, Python frames, control flow
# (a conditional's or loop's time is the time of the ops inside it).
NOT_OPS = ("ThreadpoolListener", "ThunkExecutor", "$", "np.", "PjitFunction", "Slinky",
           "CommonPjRt", "cond", "while", "call")


def supernet_runner(args):
  """``run(steps)`` training the supernet ``steps`` more steps."""
  space = spaces.get("nasnet", nodes=5, ops="ws5")
  config = ml_collections.ConfigDict(evaluator_lib.default_config())
  config.update(num_cells=args.num_cells, features=args.features, batch_size=args.batch,
                eval_images=8)
  data = supernet_benchmark.random_data(args.batch * 4, 8, args.image_size)
  evaluator = evaluator_lib.SupernetEvaluator(space, data, config, seed=0)
  pool = supernet_lib.arch_arrays(space, space.sample(np.random.default_rng(1), 100))

  def run(steps):
    evaluator.train_steps(pool, evaluator.step + steps)
    jax.block_until_ready(evaluator.state)
  return run


def child_runner(args):
  """``run(steps)`` training the published child network ``args.model``."""
  train, _, state, batch, key = child_benchmark.setup(
      args.model, args.batch, num_cells=args.num_cells, features=args.features,
      image_size=args.image_size)

  def run(steps):
    nonlocal state
    for _ in range(steps):
      state, metrics = train(state, batch, key)
    jax.block_until_ready(metrics)
  return run


def op_groups(trace_dir: str) -> tuple[collections.Counter, collections.Counter]:
  """``(microseconds, calls)`` per op group of the trace in ``trace_dir``."""
  from xprof.convert import raw_to_tool_data  # pylint: disable=import-outside-toplevel
  path = sorted(glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True))[-1]
  data, _ = raw_to_tool_data.xspace_to_tool_data([path], "trace_viewer", {})
  micros, calls = collections.Counter(), collections.Counter()
  for event in json.loads(data)["traceEvents"]:
    name = event.get("name", "")
    if event.get("ph") != "X" or name.startswith(NOT_OPS):
      continue
    group = re.sub(r"(\.\d+)+$", "", re.sub(r"\.clone.*", "", name))
    micros[group] += event["dur"]
    calls[group] += 1
  return micros, calls


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="supernet",
                      help="'supernet' or a published child network, e.g. NAONet-A")
  parser.add_argument("--num_cells", type=int, default=1)
  parser.add_argument("--features", type=int, default=20)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--image_size", type=int, default=32)
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--top", type=int, default=30)
  args = parser.parse_args()
  if args.model != "supernet" and args.model not in known.NAMES:
    parser.error(f"--model: 'supernet' or one of {list(known.NAMES)}, got {args.model!r}")

  run = (supernet_runner if args.model == "supernet" else child_runner)(args)
  start = time.time()
  run(1)
  print(f"compile and first step: {time.time() - start:.1f} s", flush=True)
  run(1)
  start = time.time()
  run(args.steps)
  wall = (time.time() - start) / args.steps
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir)
    run(args.steps)
    jax.profiler.stop_trace()
    micros, calls = op_groups(trace_dir)
  total = sum(micros.values())
  print(f"{args.model} num_cells={args.num_cells} features={args.features} batch={args.batch} "
        f"{args.image_size}x{args.image_size}: {wall:.3f} s per step untraced; op time "
        f"{total / 1e3 / args.steps:.0f} ms per step in {sum(calls.values()) // args.steps} ops")
  print(f"{'ms/step':>9} {'calls/step':>10} {'share':>6}  op group")
  for group, us in micros.most_common(args.top):
    print(f"{us / 1e3 / args.steps:9.1f} {calls[group] / args.steps:10.0f} "
          f"{us / total:6.1%}  {group}")


if __name__ == "__main__":
  main()
