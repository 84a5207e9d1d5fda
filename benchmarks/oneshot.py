"""Weight-sharing searches side by side: NAO-WS, Random-WS, evolution, ENAS, DARTS.

  python benchmarks/oneshot.py [--config=configs/quickstart.py] [--seeds=1000:1003] \
      [--methods=nao,random,evolution,enas,darts,darts-1st] [--out=/tmp/oneshot]

Each (method, seed) is one run of the NAO-WS job, ``python -m nao_jax.main
--config=CONFIG --config.strategy=METHOD --config.seed=SEED``: the search over
the same supernet settings, data and budget, the re-ranking of its top archs and
the same final training of the winner. Reported per method: the search wall time
(start to ``best_arch.json``, re-ranking included), the final training's wall
time and the winner's final test accuracy, as mean and standard deviation over
the seeds. Runs already finished in ``--out`` are read, not repeated, so an
interrupted benchmark resumes. Prints a table and writes ``--results`` (markdown)
and a plot beside it. On CIFAR-10 (``--config=configs/cifar.py``) this needs a
GPU; the default runs on the bundled digits on a CPU.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import subprocess
import sys
import time

from absl import app
from absl import flags
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nao_jax import viz  # noqa: E402  (matplotlib with the Agg backend)

_CONFIG = flags.DEFINE_string("config", "configs/quickstart.py", "The NAO-WS config file.")
_SEEDS = flags.DEFINE_string("seeds", "1000:1003", "Seeds START:STOP (reporting: 1000 on).")
_METHODS = flags.DEFINE_list("methods", ["nao", "random", "evolution", "enas", "darts"],
                             "Values of config.strategy to compare, or a name of VARIANTS.")
_OUT = flags.DEFINE_string("out", "/tmp/nao_jax_oneshot", "Directory of the runs' workdirs.")
_RESULTS = flags.DEFINE_string("results", str(REPO / "benchmarks" / "results" / "oneshot.md"),
                               "Markdown file written with the table ('' for none).")


# Methods that are a strategy with other settings: name -> (strategy, extra flags).
VARIANTS = {"darts-1st": ("darts", ["--config.darts.order=1"])}


def run_one(method: str, seed: int, workdir: pathlib.Path) -> dict[str, float]:
  """Runs (or reads) one search; returns its figures."""
  best = workdir / "best_arch.json"
  marker = workdir / "wall.json"
  if not (marker.exists() and best.exists()):
    command = [sys.executable, "-m", "nao_jax.main", f"--config={_CONFIG.value}",
               f"--workdir={workdir}", f"--config.seed={seed}"]
    strategy, extra = VARIANTS.get(method, (method, []))
    command += [f"--config.strategy={strategy}", *extra]
    print(f"{method} seed {seed}: {' '.join(command[1:])}", flush=True)
    started = time.time()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "NAO_JAX_PROGRESS": "0"})
    if done.returncode != 0:
      raise RuntimeError(f"{method} seed {seed} failed:\n{done.stderr[-3000:]}")
    total = time.time() - started
    # best_arch.json is written when the re-ranking ends and rewritten with the
    # final accuracy: the final training's own wall time tells them apart.
    final = json.loads((workdir / "final" / "results.json").read_text())
    marker.write_text(json.dumps({"total_s": total, "final_s": final["wall_time_s"]}))
  wall = json.loads(marker.read_text())
  summary = json.loads(best.read_text())
  return {"search_s": wall["total_s"] - wall["final_s"], "final_s": wall["final_s"],
          "test_accuracy": summary["final_test_accuracy"]}


def main(argv: list[str]) -> None:
  del argv
  start, stop = (int(v) for v in _SEEDS.value.split(":"))
  seeds = range(start, stop)
  figures = {}
  for method in _METHODS.value:
    runs = [run_one(method, seed, pathlib.Path(_OUT.value) / method / f"s{seed}")
            for seed in seeds]
    figures[method] = {k: np.array([r[k] for r in runs]) for k in runs[0]}
  header = (f"config {_CONFIG.value}, seeds {start}..{stop - 1} (reporting seeds: no setting "
            f"was tuned on them), {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores")
  lines = [header, "", "| method | winner's test accuracy | search + re-rank (s) | final "
           "training (s) | per seed |", "|---|---|---|---|---|"]
  for method, f in figures.items():
    per_seed = ", ".join(f"{a:.4f}" for a in f["test_accuracy"])
    lines.append(f"| {method} | {f['test_accuracy'].mean():.4f} ± {f['test_accuracy'].std():.4f}"
                 f" | {f['search_s'].mean():.0f} | {f['final_s'].mean():.0f} | {per_seed} |")
  print("\n".join(lines))
  if _RESULTS.value:
    results = pathlib.Path(_RESULTS.value)
    command = "python benchmarks/oneshot.py " + " ".join(sys.argv[1:])
    results.write_text("# Weight-sharing searches side by side\n\nCommand: `" + command +
                       "`\n\n" + "\n".join(lines) + "\n\n![accuracy against search time]"
                       f"({results.stem}.png)\n")
    viz.plot_scatter({m: (f["search_s"], f["test_accuracy"]) for m, f in figures.items()},
                     str(results.with_suffix(".png")), "search + re-rank wall time (s)",
                     "winner's test accuracy", header)
    print(f"wrote {results} and {results.with_suffix('.png')}")


if __name__ == "__main__":
  app.run(main)
