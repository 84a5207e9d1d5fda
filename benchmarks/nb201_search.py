"""Search quality per evaluation on the tabular benchmarks: NAO against every baseline.

  python benchmarks/nb201_search.py                        # NAS-Bench-201 CIFAR-10
  python benchmarks/nb201_search.py --benchmark=nb201-c100 # or nb201-in16, macro
  python benchmarks/nb201_search.py --quick                # tuning seeds 0-19

Seeds: reports use seeds 1000-1099, on which no setting of any strategy was
tuned; ``--quick`` runs the tuning seeds 0-19 (the only ones settings may be
chosen on). The output names the seeds it used. ``benchmarks/macro_search.py``
is this script with ``--benchmark=macro``.

Every run is the library's search loop (``nao_jax.search.rounds``, no files)
with the benchmark's config (``configs/nb201.py`` with the dataset's columns,
or ``configs/macro.py``) and ``config.seed = seed``. One run per (strategy,
seed) with the largest budget; the result at a smaller budget is the best arch
among its first evaluations (no strategy's schedule depends on the budget).
Writes ``benchmarks/results/search_<benchmark>[_tuning].md`` and a PNG of the
curves with 95% confidence bands. Runs are spread over ``--processes`` processes.

Every finished run is appended to ``--runs`` (default
``benchmarks/results/runs/<benchmark>.jsonl``: its per-evaluation scores and
reports) under a fingerprint of its config and of its code (``SEARCH_CODE``,
``STRATEGY_CODE``); a later call reuses the runs whose fingerprint still matches,
so a table over 100 seeds can be built over several sittings, and a changed
setting or strategy reruns exactly what it changed. Scores and reports are
rounded to ``DECIMALS`` decimals, fresh or read back: the tables store float32
percentages, and two cells with the same number of correct images can differ by
1e-7; rounded, they tie, and the first one a run evaluates is its best.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import multiprocessing
import os
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# The tables are looked up in $NAO_JAX_DATA (nao_jax.data_dirs); default: the shared data.
os.environ.setdefault("NAO_JAX_DATA", str(REPO.parent / "shared" / "data"))

import numpy as np  # noqa: E402

# name -> (config module, evaluator overrides, title).
BENCHMARKS = {
    "nb201-c10": ("nb201", dict(search_metric="c10v_valid_200", report_metric="c10_test_200"),
                  "NAS-Bench-201 CIFAR-10"),
    "nb201-c100": ("nb201", dict(search_metric="c100_valid_12", report_metric="c100_test_12"),
                   "NAS-Bench-201 CIFAR-100 (12 epochs)"),
    "nb201-in16": ("nb201", dict(search_metric="in16_valid_12", report_metric="in16_test_12"),
                   "NAS-Bench-201 ImageNet16-120 (12 epochs)"),
    "macro": ("macro", {}, "NAS-Bench-Macro CIFAR-10"),
}
REPORTING_SEEDS = range(1000, 1100)
TUNING_SEEDS = range(0, 20)


# What a run's result depends on besides its config: the search loop's code, and
# each strategy's own modules (a change to one strategy leaves the others' runs valid).
SEARCH_CODE = ("nao_jax/search.py", "nao_jax/strategies/__init__.py",
               "nao_jax/strategies/base.py", "nao_jax/spaces", "nao_jax/evaluators/base.py",
               "nao_jax/evaluators/tabular.py")
STRATEGY_CODE = {
    "nao": ("nao_jax/strategies/nao.py", "nao_jax/controller"),
    "nao_reference": ("nao_jax/strategies/nao.py", "nao_jax/controller"),
    "gcn": ("nao_jax/strategies/gcn.py", "nao_jax/strategies/surrogate.py"),
    "bananas": ("nao_jax/strategies/bananas.py", "nao_jax/strategies/surrogate.py"),
    "local": ("nao_jax/strategies/local.py",),
    "evolution": ("nao_jax/strategies/evolution.py",),
    "reinforce": ("nao_jax/strategies/reinforce.py",),
    "random": ("nao_jax/strategies/random.py",),
}

STRATEGY_CHOICES = tuple(STRATEGY_CODE)
DECIMALS = 6  # Scores and reports are rounded to this many (module docstring).


def _worker_init(compilation_cache: str) -> None:
  # One XLA thread per process: the processes share the cores.
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
  if compilation_cache:
    # Every run compiles the same programs: keep all of them, however quick to
    # compile. A program read back is the one compiled, so no result changes.
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.expanduser(compilation_cache))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


def benchmark_config(benchmark: str, strategy: str, overrides: tuple[str, ...] = ()):
  """The search config of ``benchmark`` for ``strategy`` (``nao_reference``: NAO
  with the reference's candidate selection, NAS-Bench-201 only), with
  ``overrides`` (``"field.path=python literal"``) applied."""
  import importlib
  module, evaluator_overrides, _ = BENCHMARKS[benchmark]
  config_module = importlib.import_module(f"configs.{module}")
  config = config_module.get_config("reference" if strategy == "nao_reference" else None)
  config.strategy = "nao" if strategy == "nao_reference" else strategy
  config.evaluator.update(evaluator_overrides)
  for override in overrides:
    path, _, text = override.partition("=")
    *parents, field = path.split(".")
    section = config
    for parent in parents:
      section = section[parent]
    if field not in section:
      raise ValueError(f"--set {override}: the config has no field {path!r}.")
    section[field] = ast.literal_eval(text)
  return config


def code_digest(strategy: str) -> str:
  """sha256 of the Python files (paths and contents) of ``SEARCH_CODE`` and
  ``STRATEGY_CODE[strategy]``."""
  digest = hashlib.sha256()
  for entry in SEARCH_CODE + STRATEGY_CODE[strategy]:
    path = REPO / entry
    for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
      digest.update(str(file.relative_to(REPO)).encode() + b"\0" + file.read_bytes())
  return digest.hexdigest()


def fingerprint(benchmark: str, strategy: str, overrides: tuple[str, ...]) -> str:
  """A short hash of the run's config (seed, budget and the other strategies'
  sections left out) and of its code (``code_digest``)."""
  config = benchmark_config(benchmark, strategy, overrides)
  del config.seed, config.budget
  for other in STRATEGY_CHOICES:
    if other != config.strategy and other in config:
      del config[other]
  text = json.dumps(json.loads(config.to_json()), sort_keys=True) + code_digest(strategy)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


RUNS_DIR = REPO / "benchmarks" / "results" / "runs"


def default_runs_path(benchmark: str, runs_dir: pathlib.Path = RUNS_DIR) -> pathlib.Path:
  """Where the runs of ``benchmark`` are recorded unless ``--runs`` says otherwise."""
  return pathlib.Path(runs_dir) / f"{benchmark.replace('-', '_')}.jsonl"


def load_runs(path: pathlib.Path) -> dict[tuple[str, str, int], dict]:
  """``(strategy, fingerprint, seed) -> run`` of the runs recorded in ``path``
  (the longest where one was recorded twice); a damaged line (a crash while
  appending) is skipped with a warning."""
  runs = {}
  if not path.exists():
    return runs
  for number, line in enumerate(path.read_text().splitlines(), start=1):
    try:
      run = json.loads(line)
      key = (run["strategy"], run["fingerprint"], int(run["seed"]))
    except (ValueError, KeyError, TypeError):
      print(f"warning: {path}:{number} is not a run record; skipped", flush=True)
      continue
    if key not in runs or len(run["scores"]) > len(runs[key]["scores"]):
      runs[key] = run
  return runs


def run_one(job: tuple[str, str, int, int, tuple[str, ...]]
            ) -> tuple[str, int, np.ndarray, np.ndarray, float]:
  """One search: ``(benchmark, strategy, seed, budget, overrides)`` -> (strategy,
  seed, scores [B], reports [B], seconds)."""
  from nao_jax import search

  benchmark, strategy, seed, budget, overrides = job
  started = time.time()
  config = benchmark_config(benchmark, strategy, overrides)
  config.seed, config.budget = seed, budget
  _, evaluator, strategy_fns, state, _ = search.setup(config)
  records = []
  for result in search.rounds(strategy_fns, state, evaluator, budget):
    records += result.records
  # Rounded as recorded (module docstring).
  scores = np.round([r["score"] for r in records], DECIMALS)
  reports = np.round([r["report"][evaluator.report_metric] for r in records], DECIMALS)
  return strategy, seed, scores, reports, time.time() - started


def tie_note(table, optimum_score: float) -> str:
  """A sentence naming the cells that share the best rounded search metric, if
  several do (NAS-Bench-201 only: NAS-Bench-Macro's evaluator lists no table)."""
  if not hasattr(table, "all_scores"):
    return ""
  search_all, report_all = table.all_scores()
  tied = np.flatnonzero(np.round(search_all, DECIMALS) == optimum_score)
  if len(tied) < 2:
    return ""
  reports = ", ".join(f"{report_all[i]:.2f}" for i in tied)
  return (f"\n{len(tied)} cells share the best `{table.search_metric}`, {optimum_score:.2f} "
          f"(equal up to the table's float error), with `{table.report_metric}` {reports}: "
          "a run reports the first of them it evaluates, and finding any counts as finding the "
          "optimum.")


def report_curve(scores: np.ndarray, reports: np.ndarray) -> np.ndarray:
  """Per-run arrays ``[R, B]`` -> ``[R, B]``: at each evaluation, the report of the
  run's best arch so far (the first one evaluated among those tied on the score)."""
  runs, length = scores.shape
  curve = np.empty((runs, length))
  for r in range(runs):
    best = -np.inf
    for t in range(length):
      if scores[r, t] > best:
        best, value = scores[r, t], reports[r, t]
      curve[r, t] = value
  return curve


def summarise(scores: np.ndarray, reports: np.ndarray, optimum_score: float,
              budgets: list[int]) -> dict[str, object]:
  """Per-run arrays ``[R, B]`` -> the curves (report of the best so far, ``[R, B]``)
  and per budget: the report's mean and std, the fraction of runs that reached
  ``optimum_score``, and the mean best search score."""
  curve = report_curve(scores, reports)
  reached = np.where((scores >= optimum_score).any(axis=1),
                     np.argmax(scores >= optimum_score, axis=1) + 1, np.inf)
  columns = {}
  best_score = np.maximum.accumulate(scores, axis=1)
  for budget in budgets:
    at = curve[:, budget - 1]
    columns[budget] = (at.mean(), at.std(), float(np.mean(reached <= budget)),
                       best_score[:, budget - 1].mean())
  return {"columns": columns, "curve": curve, "median_to_optimum": float(np.median(reached))}


def nao_lead(summaries: dict[str, dict], budgets: list[int]) -> str:
  """A markdown table: NAO's mean report minus each other strategy's, per budget,
  ± one standard error of the difference (the strategies' runs are independent),
  or "" when NAO is not compared with anything."""
  if "nao" not in summaries or len(summaries) < 2:
    return ""
  nao = summaries["nao"]["curve"]
  lines = ["| NAO minus | " + " | ".join(f"{b} evals" for b in budgets) + " |",
           "|" + "---|" * (len(budgets) + 1)]
  for name, summary in summaries.items():
    if name == "nao":
      continue
    cells = []
    for budget in budgets:
      ours, theirs = nao[:, budget - 1], summary["curve"][:, budget - 1]
      error = np.sqrt(ours.var(ddof=1) / len(ours) + theirs.var(ddof=1) / len(theirs))
      cells.append(f"{ours.mean() - theirs.mean():+.2f} ± {error:.2f}")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _seed_range(text: str) -> range:
  first, _, end = text.partition(":")
  return range(int(first), int(end))


def main(argv: list[str] | None = None, benchmark: str | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--benchmark", default=benchmark or "nb201-c10", choices=sorted(BENCHMARKS))
  parser.add_argument("--seeds", default=f"{REPORTING_SEEDS.start}:{REPORTING_SEEDS.stop}",
                      help="FIRST:END (END excluded); default: the reporting seeds 1000:1100.")
  parser.add_argument("--quick", action="store_true",
                      help="the tuning seeds 0:20 (overrides --seeds).")
  parser.add_argument("--budgets", default="50,100,150,200")
  parser.add_argument("--strategies", default="nao,gcn,bananas,local,evolution,reinforce,random",
                      help=f"comma-separated, from {STRATEGY_CHOICES}")
  parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
  parser.add_argument("--out", default=None,
                      help="markdown path (default: results/search_<benchmark>[_tuning].md)")
  parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                      help="override a config field of every strategy's config (tuning "
                           "seeds only), e.g. --set=nao.top_k=50")
  parser.add_argument("--compilation_cache", default="~/.cache/nao_jax/xla_benchmarks",
                      help="directory of compiled programs shared by the runs ('' for none)")
  parser.add_argument("--runs", default=None,
                      help="JSONL of finished runs, reused and appended to "
                           "(default: results/runs/<benchmark>.jsonl)")
  args = parser.parse_args(argv)
  seeds = TUNING_SEEDS if args.quick else _seed_range(args.seeds)
  budgets = sorted(int(b) for b in args.budgets.split(","))
  names = args.strategies.split(",")
  for name in names:
    if name not in STRATEGY_CHOICES:
      parser.error(f"--strategies: unknown {name!r}; choose from {STRATEGY_CHOICES}.")
  tuning = seeds.start < TUNING_SEEDS.stop
  if tuning and seeds.stop > TUNING_SEEDS.stop:
    parser.error("--seeds: do not mix tuning seeds (0-19) with others.")
  seed_words = (f"seeds {seeds.start}-{seeds.stop - 1}" +
                (" (tuning seeds)" if tuning else " (reporting seeds: no setting was tuned on them)"))
  print(f"{args.benchmark}: {', '.join(names)} on {seed_words}", flush=True)
  suffix = "_tuning" if tuning else ""
  out = pathlib.Path(args.out or REPO / "benchmarks" / "results" /
                     f"search_{args.benchmark.replace('-', '_')}{suffix}.md")

  from nao_jax import evaluators
  table = evaluators.build_plain(benchmark_config(args.benchmark, "random"))
  optimum_arch, optimum = table.optimum()
  optimum_score = round(optimum.score, DECIMALS)
  ties = tie_note(table, optimum_score)

  runs_path = pathlib.Path(args.runs or default_runs_path(args.benchmark))
  recorded = load_runs(runs_path)
  overrides = tuple(args.set)
  if overrides and not tuning:
    parser.error("--set: settings are tuned on the tuning seeds (0-19) only; put a chosen "
                 "setting in the config file before reporting on other seeds.")
  prints = {name: fingerprint(args.benchmark, name, overrides) for name in names}
  results: dict[str, dict[int, tuple]] = {name: {} for name in names}
  for name in names:
    for seed in seeds:
      run = recorded.get((name, prints[name], seed))
      if run and len(run["scores"]) >= budgets[-1]:
        results[name][seed] = (np.array(run["scores"]), np.array(run["reports"]),
                               run["seconds"])
  reused = sum(map(len, results.values()))
  # Longest jobs (NAO, then the GCN) first, so the processes finish together.
  order = {"nao": 0, "nao_reference": 0, "gcn": 1, "bananas": 2}
  jobs = [(args.benchmark, name, seed, budgets[-1], overrides)
          for name in sorted(names, key=lambda n: order.get(n, 3)) for seed in seeds
          if seed not in results[name]]
  print(f"{reused} runs reused from {runs_path}, {len(jobs)} to run", flush=True)
  started, load_before = time.time(), os.getloadavg()
  runs_path.parent.mkdir(parents=True, exist_ok=True)
  context = multiprocessing.get_context("spawn")
  with context.Pool(args.processes, initializer=_worker_init,
                    initargs=(args.compilation_cache,)) as pool, \
      runs_path.open("a") as runs_file:
    for done, (name, seed, scores, reports, seconds) in enumerate(
        pool.imap_unordered(run_one, jobs), start=1):
      results[name][seed] = (scores, reports, seconds)
      runs_file.write(json.dumps(dict(
          strategy=name, seed=seed, fingerprint=prints[name], seconds=round(seconds, 2),
          scores=scores.tolist(), reports=reports.tolist())) + "\n")
      runs_file.flush()
      print(f"[{done}/{len(jobs)}] {name} seed {seed}: best {reports[np.argmax(scores)]:.2f} "
            f"({seconds:.1f}s, {time.time() - started:.0f}s total)", flush=True)
  wall = time.time() - started
  load_after = os.getloadavg()

  summaries, curves = {}, {}
  for name in names:
    scores = np.stack([results[name][s][0] for s in seeds])
    reports = np.stack([results[name][s][1] for s in seeds])
    summaries[name] = summarise(scores, reports, optimum_score, budgets)
    curve = summaries[name]["curve"]
    x = np.arange(1, curve.shape[1] + 1)
    curves[name] = (x, curve.mean(0), 1.96 * curve.std(0) / np.sqrt(len(seeds)))
    summaries[name]["seconds"] = float(np.mean([results[name][s][2] for s in seeds]))

  metric = table.report_metric
  header = "| strategy | " + " | ".join(f"{b} evals" for b in budgets) + \
      " | found optimum (" + "/".join(map(str, budgets)) + ") | median evals to optimum | " \
      f"best {table.search_metric} (" + "/".join(map(str, budgets)) + ") | s/run |"
  lines = [header, "|" + "---|" * (len(budgets) + 5)]
  for name in names:
    s = summaries[name]
    cells = [f"{m:.2f} ± {sd:.2f}" for m, sd, _, _ in s["columns"].values()]
    found = "/".join(f"{f:.2f}" for _, _, f, _ in s["columns"].values())
    searched = "/".join(f"{b:.2f}" for _, _, _, b in s["columns"].values())
    median = s["median_to_optimum"]
    median_text = f"{median:.0f}" if np.isfinite(median) else f"> {budgets[-1]}"
    lines.append(f"| {name} | " + " | ".join(cells) + f" | {found} | {median_text} | "
                 f"{searched} | {s['seconds']:.1f} |")
  table_text = "\n".join(lines)
  print(table_text)
  lead = nao_lead(summaries, budgets)
  if lead:
    print(lead)
    lead = ("\n\nNAO's lead: its mean minus each strategy's, ± one standard error of the "
            f"difference.\n\n{lead}")

  from nao_jax import viz
  png = out.with_suffix(".png")
  title = BENCHMARKS[args.benchmark][2]
  viz.plot_curves(curves, str(png), f"{metric} of the best-by-{table.search_metric} arch",
                  title=f"{title}, {seed_words.split(' (')[0]} (95% CI)",
                  optimum=optimum.report[metric])
  command = (f"python benchmarks/nb201_search.py --benchmark={args.benchmark}" +
             (" --quick" if args.quick else f" --seeds={seeds.start}:{seeds.stop}"))
  if args.strategies != parser.get_default("strategies"):
    command += f" --strategies={args.strategies}"
  command += "".join(f" --set={o}" for o in overrides)
  out.parent.mkdir(parents=True, exist_ok=True)
  shown_runs = runs_path.relative_to(REPO) if runs_path.is_relative_to(REPO) else runs_path
  out.write_text(f"""# {title}: search benchmark on {seed_words}

Command: `{command}` ({args.processes} process{"es" if args.processes != 1 else ""}).
Search on `{table.search_metric}`, report `{metric}` of the arch with the best search metric
among the first N evaluations; mean ± std over {len(seeds)} runs. "Found optimum": fraction of runs
that evaluated the best-by-`{table.search_metric}` arch
(`{table.space.to_string(optimum_arch)}`, {metric} {optimum.report[metric]:.2f}) within the budget.
Median evaluations to the optimum counts runs that never found it as infinite.
"Best {table.search_metric}": the mean over runs of the best search metric found, what
the strategy itself maximises.{ties}

{table_text}{lead}

Wall time {wall:.0f} s for {len(jobs)} runs ({reused} more read back from `{shown_runs}`; s/run is
their time when run) on {os.cpu_count()} CPU cores; load average before
{load_before[0]:.1f} and after {load_after[0]:.1f} (the machine is shared with other jobs, so
times are pessimistic). Curves: ![curves]({png.name})
""")
  print(f"wrote {out} and {png}; {wall:.0f}s wall")


if __name__ == "__main__":
  main()
