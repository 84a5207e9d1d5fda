"""Trials per minute of the executors with 1, 2 and 4 workers, for a simulated trial.

  python benchmarks/executor.py                      # 2-second trials, local and ray
  python benchmarks/executor.py --seconds=0.5 --executors=local

Each run is the search driver (``search.rounds``) with the random strategy over
the NAS-Bench-201 table, whose ``seconds_per_query`` simulates a trial's
training, so the figures measure the executor and the driver, not a network.
For every (executor, workers) the search runs two rounds of the same size: the
first (cold: Ray starts its worker processes, each builds its evaluator) and
the second (warm: the steady state of a long search). Per round: trials per
minute, the speed-up over one local worker, the scaling efficiency (speed-up /
workers) and the overhead per trial (wall time minus the ideal ``trials *
seconds / workers``, divided by the trials). ``ray.init`` itself is excluded
(paid once per search). Writes ``benchmarks/results/executor.md``.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# The table is looked up in $NAO_JAX_DATA (nao_jax.data_dirs); default: the shared data.
os.environ.setdefault("NAO_JAX_DATA", str(REPO.parent / "shared" / "data"))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from configs import nb201 as nb201_config  # noqa: E402
from nao_jax import search  # noqa: E402


def measure(executor: str, workers: int, seconds: float, trials: int) -> list[float]:
  """Wall seconds of each of two rounds of ``trials`` trials (cold, warm)."""
  config = nb201_config.get_config()
  config.strategy = "random"
  config.random.round_size = trials
  config.budget = 2 * trials
  config.evaluator.seconds_per_query = seconds
  config.executor.update(name=executor, workers=workers, cpus_per_trial=0.25)
  _, evaluator, strategy, state, pool = search.setup(config)  # Starts Ray if asked.
  walls, started = [], time.perf_counter()
  for _ in search.rounds(strategy, state, evaluator, config.budget, pool=pool):
    walls.append(time.perf_counter() - started)
    started = time.perf_counter()
  return walls


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--seconds", type=float, default=2.0, help="simulated seconds per trial")
  parser.add_argument("--trials_per_worker", type=int, default=8)
  parser.add_argument("--executors", default="local,ray")
  parser.add_argument("--workers", default="1,2,4")
  args = parser.parse_args()
  workers_list = [int(w) for w in args.workers.split(",")]
  rows, baseline = [], None
  for executor in args.executors.split(","):
    for workers in workers_list:
      trials = args.trials_per_worker * workers
      for round_, wall in zip(("cold", "warm"), measure(executor, workers, args.seconds,
                                                        trials)):
        per_minute = 60 * trials / wall
        baseline = baseline or {}
        baseline.setdefault(round_, per_minute)
        speedup = per_minute / baseline[round_]
        overhead = (wall - trials * args.seconds / workers) / trials
        rows.append((executor, workers, round_, trials, wall, per_minute, speedup,
                     speedup / workers, overhead))
        print(f"{executor:5s} workers {workers} {round_}: {trials} trials in {wall:.2f} s, "
              f"{per_minute:.1f} trials/min, speed-up {speedup:.2f}, efficiency "
              f"{speedup / workers:.3f}, overhead {1000 * overhead:.1f} ms/trial", flush=True)
  lines = [
      f"# Executors: trials per minute for simulated {args.seconds:g}-second trials", "",
      f"Command: `python benchmarks/executor.py --seconds={args.seconds:g} "
      f"--executors={args.executors} --workers={args.workers}`",
      f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
      f"load average before the last run {os.getloadavg()[0]:.2f}.",
      "Each run: the search driver with the random strategy on the NAS-Bench-201 table, two "
      f"rounds of {args.trials_per_worker} trials per worker (cold: Ray's worker processes "
      "start and build their evaluator; warm: the steady state); speed-up against one local "
      "worker in the same round; overhead = (wall - ideal) / trials. ray.init is not counted.",
      "",
      "| executor | workers | round | trials | wall s | trials/min | speed-up | efficiency | "
      "overhead ms/trial |",
      "|---|---|---|---|---|---|---|---|---|",
      *(f"| {e} | {w} | {r} | {t} | {wall:.2f} | {m:.1f} | {s:.2f} | {eff:.3f} | "
        f"{1000 * o:.1f} |" for e, w, r, t, wall, m, s, eff, o in rows), ""]
  path = REPO / "benchmarks" / "results" / "executor.md"
  path.write_text("\n".join(lines))
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
