"""The search driver: strategy <-> evaluator rounds with history and resume, for
every strategy over every evaluator (the ``search`` job; ``nao_ws`` composes it).

Library use (no files written):

  space, evaluator, strategy, state, pool = search.setup(config)
  for result in search.rounds(strategy, state, evaluator, budget=100, pool=pool):
    print(result.round, search.best_record(result.records))

``rounds`` is the whole loop as an iterator of ``RoundResult``. Each round asks
the strategy for archs, lets the evaluator prepare (``before_round``: the
supernet trains its shared weights), evaluates (several trials at once where
``config.executor`` says so: ``evaluators.executors``), hands every record to
``on_record`` (the driver's history writer: flushed and fsynced) the moment it
is known, in the order trials finish, and only then tells the strategy. A
failed evaluation (an exception, a non-finite score) is recorded with
``failed`` and its ``error``, counts towards the budget and is never told.

Two kinds of search, chosen by the evaluator (``evaluators.base``):

* stationary (tables, child training): each round asks
  ``strategy.round_size(state)`` archs (capped by the budget) and evaluates them
  once; ``budget`` counts evaluations.
* pool (``evaluator.rescores_pool``, the NAO-WS supernet; ``Pool`` from
  ``config.search``): the first round asks ``pool_size`` archs, every later one
  ``new_per_round`` that replace the worst of the pool (all of it for a strategy
  that ``replaces_pool``, ENAS); the whole pool is
  evaluated every round (``pool_size`` evaluations), the strategy is told the
  new archs' scores and then ``rescore``-d with the pool's, best first.

``run(config, workdir)`` adds the files: ``history.jsonl``, checkpoints
(strategy, evaluator, pool) after every round and wherever the evaluator
offers one mid-round, ``best_arch.json``, ``plots/search.png`` and, for a
strategy that predicts scores, ``plots/predicted_vs_measured_round<r>.png``.
Restarting it with the same workdir restores the latest checkpoint and replays
the history recorded after it: the strategy is asked again (it is
deterministic given its state and seed), each arch asked is checked against
the recorded one and takes its recorded result instead of being evaluated
again. So a resumed run asks for the same archs in the same order and ends
with the same result as one that was never interrupted. A resume whose
settings differ from the checkpoint's (only ``MAY_CHANGE`` may) is refused.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

from absl import logging
from etils import epath
import ml_collections
import numpy as np

from nao_jax import atomic
from nao_jax import configuration
from nao_jax import evaluators
from nao_jax import history
from nao_jax import progress as progress_lib
from nao_jax import strategies
from nao_jax import tensorboard
from nao_jax import viz
from nao_jax import viz_cells
from nao_jax.checkpoint import Checkpointer
from nao_jax.controller import metrics as metrics_lib
from nao_jax.workdir import MAY_CHANGE  # Fields a resume may change (every job's list).
from nao_jax.workdir import WorkdirError

# Config sections that define a search (a resume must match them, but for MAY_CHANGE).
_DEFINING = ("seed", "strategy", "evaluator", "space", "data", "supernet", "search")


@dataclasses.dataclass(frozen=True)
class Pool:
  """The pool of a pool search: ``size`` archs, ``new_per_round`` replaced per round."""
  size: int
  new_per_round: int


@dataclasses.dataclass(frozen=True)
class Progress:
  """Where a search stands, besides its strategy and evaluator states.

  Attributes:
    round: the round under way or next.
    num_evaluations: evaluations recorded before it.
    pool: a pool search's archs, best first after a round; () otherwise.
    asked: the archs asked in ``round`` and not yet told (a checkpoint taken
      inside the round), else None.
  """
  round: int = 0
  num_evaluations: int = 0
  pool: tuple[Any, ...] = ()
  asked: tuple[Any, ...] | None = None


@dataclasses.dataclass(frozen=True)
class RoundResult:
  """One round: its number, its records (history lines), the strategy state
  after they were told, and the progress after it."""
  round: int
  records: list[dict[str, Any]]
  state: Any
  progress: Progress


def setup(config: ml_collections.ConfigDict
          ) -> tuple[Any, evaluators.Evaluator, strategies.Strategy, Any, Pool | None]:
  """Builds ``(space, evaluator, strategy, initial_state, pool)`` from a search
  config (``pool`` is None unless the evaluator re-scores a pool), raising
  ``ConfigError`` naming the bad field."""
  seed = config.get("seed")
  configuration.check(config, [
      ("seed", isinstance(seed, int) and not isinstance(seed, bool), "must be an integer")])
  with configuration.section("strategy"):
    strategy = strategies.get(config.get("strategy"))
  configuration.check(config, [
      (config.strategy, config.strategy in config,
       f"missing: the strategy's settings; add config.{config.strategy} = "
       f"strategies.default_config({config.strategy!r})")])
  evaluator = evaluators.build(config)
  pool = None
  if evaluator.rescores_pool:
    size = configuration.positive_int(config, "search.pool_size", 2)
    configuration.check(config, [
        ("search.new_per_round", 0 <= config.search.new_per_round < size,
         "must be in [0, pool_size)")])
    pool = Pool(size, size if strategy.replaces_pool else config.search.new_per_round)
  with configuration.section(config.strategy):
    state = strategy.init(config.seed, evaluator.space, config[config.strategy])
  return evaluator.space, evaluator, strategy, state, pool


def budget(config: ml_collections.ConfigDict, evaluator: evaluators.Evaluator,
           pool: Pool | None) -> int:
  """The number of evaluations: ``num_rounds`` whole pools where the evaluator
  defines its rounds, else ``config.budget``."""
  if evaluator.num_rounds is not None:
    return evaluator.num_rounds * (pool.size if pool else 1)
  return configuration.positive_int(config, "budget")


def make_record(space: Any, arch: Any, evaluation: evaluators.Evaluation, index: int,
                round_: int, predicted: float | None = None) -> dict[str, Any]:
  """The history line of one evaluation (``predicted``: the strategy's forecast). A
  failed evaluation's line has ``failed: true``, its ``error`` and ``score: null``."""
  failed = evaluation.failed
  record = {"index": index, "round": round_, "hash": space.arch_hash(arch),
            "arch": json.loads(space.to_json(arch)), "string": space.to_string(arch),
            "tokens": space.encode(arch).tolist(), "score": None if failed else evaluation.score,
            "report": evaluation.report, "cost": evaluation.cost, "time": time.time()}
  if failed:
    record["failed"] = True
    record["error"] = evaluation.error or f"the score is {evaluation.score}"
  if predicted is not None:
    record["predicted"] = float(predicted)
  return record


def succeeded(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """The records of evaluations that did not fail."""
  return [r for r in records if not r.get("failed")]


def _ask(strategy: strategies.Strategy, state: Any, progress: Progress, budget_: int,
         pool: Pool | None) -> tuple[list[Any], list[Any], Any]:
  """``(asked, evaluated, state)`` of a round that starts afresh: a pool search
  evaluates its survivors and the new archs."""
  if pool is None:
    asked, state = strategy.ask(state, min(strategy.round_size(state),
                                           budget_ - progress.num_evaluations))
    return asked, asked, state
  wanted = pool.size - len(progress.pool) if progress.round == 0 else pool.new_per_round
  asked, state = strategy.ask(state, wanted) if wanted else ([], state)
  return asked, [*progress.pool[:pool.size - len(asked)], *asked], state


def _evaluate_round(space: Any, evaluator: evaluators.Evaluator, archs: Sequence[Any],
                    index: int, round_: int, predicted: np.ndarray | None,
                    replay: Mapping[int, dict[str, Any]],
                    on_record: Callable[[dict[str, Any]], None] | None
                    ) -> list[dict[str, Any]]:
  """The records of ``archs`` (evaluations ``index``, ``index + 1``, ...): those
  ``replay`` holds (checked to be the same archs), the others evaluated, each
  handed to ``on_record`` as it finishes. Returns them in ``archs`` order."""
  records, todo = {}, []
  for i, arch in enumerate(archs):
    record = replay.get(index + i)
    if record is None:
      todo.append(i)
    elif record["hash"] != space.arch_hash(arch):
      raise WorkdirError(
          f"resume: the strategy asked for {space.to_string(arch)} at evaluation "
          f"{index + i} but the history has {record.get('string')}; the workdir was "
          "written by another config or code version. Use a new workdir.")
    else:
      records[i] = record
  for j, evaluation in evaluator.evaluate_each([archs[i] for i in todo]):
    i = todo[j]
    record = make_record(space, archs[i], evaluation, index + i, round_,
                         None if predicted is None else predicted[i])
    if record.get("failed"):
      print(f"evaluation {index + i} failed ({space.to_string(archs[i])}): {record['error']}",
            flush=True)
    if on_record is not None:
      on_record(record)
    records[i] = record
  if len(records) != len(archs):
    raise RuntimeError(f"the evaluator returned {len(records) - len(archs) + len(todo)} of "
                       f"the {len(todo)} evaluations asked.")
  return [records[i] for i in range(len(archs))]


def rounds(strategy: strategies.Strategy, state: Any, evaluator: evaluators.Evaluator,
           budget: int, progress: Progress = Progress(),
           replay: Mapping[int, dict[str, Any]] | None = None,
           on_record: Callable[[dict[str, Any]], None] | None = None,
           pool: Pool | None = None,
           checkpoint: Callable[[Any, Progress], None] | None = None
           ) -> Iterator[RoundResult]:
  """Runs rounds until ``budget`` evaluations (counting those before ``progress``).

  Failed evaluations count towards the budget; they are recorded but not told to
  the strategy (and leave a pool).

  Args:
    strategy, state: the strategy and its state (as restored, or fresh).
    evaluator: an ``evaluators.Evaluator``.
    budget: total number of evaluations.
    progress: where to continue from (a restored checkpoint's).
    replay: history records by index; an arch evaluated at an index that
      ``replay`` holds takes the recorded result (after checking it is the same arch).
    on_record: called with every *new* record as it finishes, before the strategy is told.
    pool: the pool of a pool search (``evaluator.rescores_pool``), else None.
    checkpoint: ``checkpoint(state, progress)`` saves a mid-round checkpoint;
      the evaluator's ``before_round`` decides when.
  Yields:
    a ``RoundResult`` after each round was told (its records in index order).
  """
  space, replay = evaluator.space, replay or {}
  while progress.num_evaluations < budget:
    round_, index = progress.round, progress.num_evaluations
    if progress.asked is None:
      asked, evaluated, state = _ask(strategy, state, progress, budget, pool)
      if not evaluated:
        logging.warning("the strategy proposed no new architecture (space exhausted?); stopping.")
        return
    else:  # Resumed inside the round: its archs were asked before the checkpoint.
      asked = list(progress.asked)
      evaluated = list(progress.pool) if pool else asked
    inside = Progress(round_, index, tuple(evaluated) if pool else (), tuple(asked))
    evaluator.before_round(round_, evaluated, functools.partial(
        checkpoint or (lambda *_: None), state, inside))
    predicted = strategy.predict(state, evaluated) if strategy.predict else None
    records = _evaluate_round(space, evaluator, evaluated, index, round_, predicted, replay,
                              on_record)
    new = range(len(evaluated) - len(asked), len(evaluated))
    told = [i for i in new if not records[i].get("failed")]
    state = strategy.tell(state, [evaluated[i] for i in told], [records[i]["score"] for i in told])
    survivors = ()
    if pool:
      kept = [i for i in range(len(evaluated)) if not records[i].get("failed")]
      order = [kept[k] for k in np.argsort(-np.asarray([records[i]["score"] for i in kept]),
                                           kind="stable")]
      survivors = tuple(evaluated[i] for i in order)
      if strategy.rescore:
        state = strategy.rescore(state, survivors, [records[i]["score"] for i in order])
    progress = Progress(round_ + 1, index + len(evaluated), survivors)
    yield RoundResult(round_, records, state, progress)


def best_record(records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
  """The record with the highest score (the earliest among ties), failures left out."""
  ok = succeeded(records)
  return max(reversed(ok), key=lambda r: r["score"]) if ok else None


def _fingerprint(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The settings a resumed run must share with the run that wrote the workdir."""
  settings = {name: config[name].to_dict() if isinstance(config[name], ml_collections.ConfigDict)
              else config[name] for name in _DEFINING if name in config}
  settings["settings"] = config[config.strategy].to_dict()
  for field in MAY_CHANGE:
    section, _, name = field.rpartition(".")
    if isinstance(settings.get(section), dict):
      settings[section].pop(name, None)
  return json.loads(json.dumps(settings, default=str))


class _Checkpoints:
  """The search's checkpoints: strategy, evaluator and progress, numbered 1, 2, ..."""

  def __init__(self, directory: str, config: ml_collections.ConfigDict,
               strategy: strategies.Strategy, evaluator: evaluators.Evaluator):
    self.config, self.strategy, self.evaluator = config, strategy, evaluator
    self.manager = Checkpointer(directory, max_to_keep=2)

  def save(self, state: Any, progress: Progress) -> None:
    space = self.evaluator.space
    arrays, record = self.strategy.save(state)
    evaluator_arrays, evaluator_record = self.evaluator.save()

    def tokens(archs):
      return None if archs is None else [space.encode(a).tolist() for a in archs]

    step = (self.manager.latest_step() or 0) + 1
    self.manager.save(step, {"strategy": arrays, "evaluator": evaluator_arrays,
                             "round": np.int64(progress.round)},
                      {"round": progress.round, "num_evaluations": progress.num_evaluations,
                       "pool": tokens(progress.pool), "asked": tokens(progress.asked),
                       "strategy": record, "evaluator": evaluator_record,
                       "fingerprint": _fingerprint(self.config)})

  def restore(self) -> tuple[Any, Progress] | None:
    """``(strategy state, progress)`` of the latest checkpoint (the evaluator
    restored in place), or None if there is none."""
    if self.manager.latest_step() is None:
      return None
    arrays, metadata = self.manager.restore(None)
    if metadata.get("fingerprint") != _fingerprint(self.config):
      raise configuration.ConfigError(
          "", f"the workdir's checkpoints were written with different settings "
          f"({metadata.get('fingerprint')}) than this config ({_fingerprint(self.config)}). "
          f"Use the same config (only {', '.join(MAY_CHANGE)} may change) or a new --workdir.")
    config, space = self.config, self.evaluator.space
    with configuration.section(config.strategy):
      state = self.strategy.restore(config.seed, space, config[config.strategy],
                                    arrays.get("strategy", {}), metadata["strategy"])
    self.evaluator.restore(arrays.get("evaluator", {}), metadata.get("evaluator", {}))

    def archs(tokens):
      return None if tokens is None else tuple(space.decode(np.asarray(t)) for t in tokens)

    return state, Progress(int(metadata["round"]), int(metadata["num_evaluations"]),
                           archs(metadata["pool"]), archs(metadata["asked"]))


def execute(config: ml_collections.ConfigDict, workdir: str
            ) -> tuple[evaluators.Evaluator, list[dict[str, Any]]]:
  """Runs (or resumes) the search in ``workdir`` with its files (see the module
  docstring); returns ``(evaluator, records)``, all records in index order."""
  space, evaluator, strategy, state, pool = setup(config)
  total = budget(config, evaluator, pool)
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  history_path = os.path.join(workdir, "history.jsonl")
  recorded = history.read(history_path)
  checkpoints = _Checkpoints(os.path.join(workdir, "checkpoints"), config, strategy, evaluator)
  try:
    restored = checkpoints.restore()
    progress = Progress()
    if restored is not None:
      state, progress = restored
    replay = {r["index"]: r for r in recorded}
    missing = [i for i in range(progress.num_evaluations) if i not in replay]
    if missing:
      raise WorkdirError(
          f"{history_path} lacks evaluation {missing[0]} (of the {progress.num_evaluations} "
          "the checkpoint counts): the history was truncated or replaced. Restore it or use a "
          "new workdir.")
    if recorded:
      print(f"resuming in round {progress.round} ({progress.num_evaluations} evaluations "
            f"checkpointed, {len(recorded) - progress.num_evaluations} more to replay from "
            f"{history_path})", flush=True)
    records = [replay[i] for i in range(progress.num_evaluations)]
    started = time.time()
    with (history.Writer(history_path) as writer,
          tensorboard.writer(workdir, "search") as tb,
          tensorboard.writer(workdir, "evaluator") as evaluator_tb,
          progress_lib.bar(total, "evaluations", "eval", len(records)) as bar):
      evaluator.observe(evaluator_tb)

      def on_record(record: dict[str, Any]) -> None:
        writer.append(record)
        bar.update(1)

      for result in rounds(strategy, state, evaluator, total, progress, replay=replay,
                           on_record=on_record, pool=pool, checkpoint=checkpoints.save):
        round_started = len(records)
        records += result.records
        checkpoints.save(result.state, result.progress)
        _write_best(workdir, space, evaluator, records)
        _print_round(result, records, total, evaluator, time.time() - started)
        _write_scalars(tb, result, records, round_started, evaluator, time.time() - started)
        if strategy.metrics is not None:
          tb.scalars(result.round, {f"strategy/{k}": v
                                    for k, v in strategy.metrics(result.state).items()})
  finally:
    checkpoints.manager.close()
  _plot(workdir, config, space, evaluator, records)
  return evaluator, records


def _write_best(workdir: str, space: Any, evaluator: evaluators.Evaluator,
                records: Sequence[dict[str, Any]]) -> None:
  best = best_record(records)
  if best is None:
    return
  atomic.write_json(os.path.join(workdir, "best_arch.json"), {
      "space": space.signature(), "arch": best["arch"], "string": best["string"],
      "hash": best["hash"], "index": best["index"], evaluator.search_metric: best["score"],
      **best["report"]})


def _write_scalars(tb: tensorboard.Writer, result: RoundResult,
                   records: Sequence[dict[str, Any]], first: int,
                   evaluator: evaluators.Evaluator, seconds: float) -> None:
  """Per evaluation (step: evaluations so far, in finish order): its score and the
  best score and report so far; per round: the wall time since the job started
  and, where the strategy forecast the round's scores, Kendall's tau between its
  forecasts and the scores (a prediction made before the scores were known)."""
  metric, report = evaluator.search_metric, evaluator.report_metric
  best_scores, best_reports = viz.best_so_far(records, report)
  for done in range(first, len(records)):
    if not records[done].get("failed"):
      tb.scalars(done + 1, {f"search/{metric}": records[done]["score"],
                            f"search/best_{metric}": best_scores[done],
                            f"search/best_{report}": best_reports[done]})
  tb.scalars(result.round, {"search/wall_seconds": seconds})
  forecast = [r for r in succeeded(result.records) if "predicted" in r]
  if len(forecast) >= 2:
    tau = metrics_lib.kendall_tau(np.array([r["predicted"] for r in forecast]),
                                  np.array([r["score"] for r in forecast]))
    tb.scalars(result.round, {"search/predicted_kendall_tau": float(tau)})


def _print_round(result: RoundResult, records: Sequence[dict[str, Any]], total: int,
                 evaluator: evaluators.Evaluator, seconds: float) -> None:
  metric, report = evaluator.search_metric, evaluator.report_metric
  best = best_record(records)
  scores = [r["score"] for r in succeeded(result.records)]
  failed = len(result.records) - len(scores)
  this_round = (f"best {max(scores):.4f} median {np.median(scores):.4f}" if scores else
                "no score")
  overall = (f"best {metric} {best['score']:.4f} ({report} {best['report'][report]:.4f})"
             if best else "no score yet")
  print(f"round {result.round:3d} | evaluations {len(records):4d}/{total} | this round: "
        f"{this_round}{f', {failed} failed' if failed else ''} | {overall} | {seconds:.1f}s",
        flush=True)


def _plot(workdir: str, config: ml_collections.ConfigDict, space: Any,
          evaluator: evaluators.Evaluator, records: Sequence[dict[str, Any]]) -> None:
  """``plots/search.png`` and, per round with predictions, the predicted-vs-measured plot."""
  if not succeeded(records):
    return
  plots = os.path.join(workdir, "plots")
  metric, report = evaluator.search_metric, evaluator.report_metric
  viz.plot_search(records, os.path.join(plots, "search.png"), metric, report,
                  title=f"{config.strategy} on {space.signature()}")
  for round_ in sorted({r["round"] for r in records if "predicted" in r}):
    predicted = [r for r in succeeded(records) if r["round"] == round_ and "predicted" in r]
    viz_cells.plot_predictions(
        [r["predicted"] for r in predicted], [r["score"] for r in predicted],
        os.path.join(plots, f"predicted_vs_measured_round{round_}.png"),
        title=f"round {round_}: {config.strategy}'s prediction vs {metric}", metric=metric)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any] | None:
  """The ``search`` job: runs (or resumes) the search in ``workdir``; returns the best record."""
  evaluator, records = execute(config, workdir)
  best = best_record(records)
  if best is not None:
    report = evaluator.report_metric
    print(f"best after {len(records)} evaluations: {best['string']} {evaluator.search_metric} "
          f"{best['score']:.4f} {report} {best['report'][report]:.4f}; plots in "
          f"{os.path.join(workdir, 'plots')}", flush=True)
  return best
