"""The ``search`` job: strategy <-> evaluator rounds with history and resume.

Library use (no files written):

  space, evaluator, strategy, state = search.setup(config)
  for result in search.rounds(strategy, state, evaluator, budget=100):
    print(result.round, result.records[-1]["score"])

``rounds`` is the whole loop as an iterator of ``RoundResult``: each round asks
the strategy for ``strategy.round_size(state)`` archs (capped by the budget),
evaluates them, hands every record to ``on_record`` (the driver's history
writer: flushed and fsynced) and only then tells the strategy.

``run(config, workdir)`` adds the files: ``history.jsonl``, a checkpoint of the
strategy (and its controller) after every round, ``best_arch.json`` and
``plots/search.png``. Restarting it with the same workdir restores the latest
checkpoint and replays the history recorded after it: the strategy is asked
again (it is deterministic given its state and seed), each arch asked is
checked against the recorded one and takes its recorded score instead of being
evaluated again. So a resumed run asks for the same archs in the same order
and ends with the same result as one that was never interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable, Iterator, Sequence

from absl import logging
import ml_collections
import numpy as np

from nao_jax import configuration
from nao_jax import evaluators
from nao_jax import history
from nao_jax import strategies
from nao_jax import viz
from nao_jax.checkpoint import Checkpointer


@dataclasses.dataclass(frozen=True)
class RoundResult:
  """One round: its number, its records (history lines) and the strategy state
  after they were told."""
  round: int
  records: list[dict[str, Any]]
  state: Any


def setup(config: ml_collections.ConfigDict) -> tuple[Any, Any, strategies.Strategy, Any]:
  """Builds ``(space, evaluator, strategy, initial_state)`` from a search config,
  raising ``ConfigError`` naming the bad field."""
  if not isinstance(config.get("seed"), int) or isinstance(config.seed, bool):
    raise configuration.ConfigError(f"config.seed: must be an integer, got {config.get('seed')!r}.")
  if not isinstance(config.get("budget"), int) or config.budget < 1:
    raise configuration.ConfigError(
        f"config.budget: must be a positive number of evaluations, got {config.get('budget')!r}.")
  with configuration.section("evaluator"):
    evaluator = evaluators.from_config(config.evaluator)
  with configuration.section("strategy"):
    strategy = strategies.get(config.get("strategy"))
  with configuration.section(config.strategy):
    state = strategy.init(config.seed, evaluator.space, config[config.strategy])
  return evaluator.space, evaluator, strategy, state


def make_record(space: Any, arch: Any, evaluation: evaluators.Evaluation, index: int,
                round_: int) -> dict[str, Any]:
  """The history line of one evaluation."""
  return {"index": index, "round": round_, "hash": space.arch_hash(arch),
          "arch": json.loads(space.to_json(arch)), "string": space.to_string(arch),
          "tokens": space.encode(arch).tolist(), "score": evaluation.score,
          "report": evaluation.report, "cost": evaluation.cost, "time": time.time()}


def rounds(strategy: strategies.Strategy, state: Any, evaluator: Any, budget: int,
           start_round: int = 0, start_index: int = 0,
           replay: Sequence[dict[str, Any]] = (),
           on_record: Callable[[dict[str, Any]], None] | None = None) -> Iterator[RoundResult]:
  """Runs rounds until ``budget`` evaluations (counting ``start_index`` done before).

  Args:
    strategy, state: the strategy and its state (as restored, or fresh).
    evaluator: has ``space`` and ``evaluate(archs)``.
    budget: total number of evaluations.
    start_round, start_index: round number and evaluation index to continue from.
    replay: history records by index; an arch asked at an index that ``replay``
      holds takes the recorded result (after checking it is the same arch).
    on_record: called with every *new* record before the strategy is told.
  Yields:
    a ``RoundResult`` after each round was told.
  """
  space, index, round_ = evaluator.space, start_index, start_round
  while index < budget:
    archs, state = strategy.ask(state, min(strategy.round_size(state), budget - index))
    if not archs:
      logging.warning("the strategy proposed no new architecture (space exhausted?); stopping.")
      return
    records = []
    for arch in archs:
      if index < len(replay):
        record = replay[index]
        if record["hash"] != space.arch_hash(arch):
          raise ValueError(
              f"resume: the strategy asked for {space.to_string(arch)} at evaluation {index} but "
              f"the history has {record.get('string')}; the workdir was written by another "
              "config or code version. Use a new workdir.")
      else:
        record = make_record(space, arch, evaluator.evaluate([arch])[0], index, round_)
        if on_record is not None:
          on_record(record)
      records.append(record)
      index += 1
    state = strategy.tell(state, archs, [r["score"] for r in records])
    yield RoundResult(round_, records, state)
    round_ += 1


def best_record(records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
  """The record with the highest score (the earliest among ties)."""
  return max(reversed(records), key=lambda r: r["score"]) if records else None


def _fingerprint(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The settings a resumed run must share with the run that wrote the workdir
  (not the budget, data path or simulated delay, which may change)."""
  evaluator = {k: v for k, v in config.evaluator.to_dict().items()
               if k not in ("path", "seconds_per_query")}
  return json.loads(json.dumps({
      "seed": config.seed, "strategy": config.strategy, "evaluator": evaluator,
      "settings": config[config.strategy].to_dict()}, default=str))


def _restore(checkpointer: Checkpointer, config: ml_collections.ConfigDict,
             strategy: strategies.Strategy, space: Any) -> tuple[Any, int, int] | None:
  """``(state, round, num_evaluations)`` of the latest checkpoint, or None."""
  if checkpointer.latest_step() is None:
    return None
  arrays, metadata = checkpointer.restore(None)
  if metadata.get("fingerprint") != _fingerprint(config):
    raise configuration.ConfigError(
        f"the workdir's checkpoints were written with different settings "
        f"({metadata.get('fingerprint')}) than this config ({_fingerprint(config)}). Use the "
        "same config (only budget and evaluator.path may change) or a new --workdir.")
  with configuration.section(config.strategy):
    state = strategy.restore(config.seed, space, config[config.strategy],
                             arrays.get("strategy", {}), metadata["strategy"])
  return state, int(metadata["round"]), int(metadata["num_evaluations"])


def _write_json(path: str, data: Any) -> None:
  temporary = path + ".tmp"
  with open(temporary, "w") as f:
    json.dump(data, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(temporary, path)


def _resume_and_run(config: ml_collections.ConfigDict, workdir: str, checkpointer: Checkpointer,
                    strategy: strategies.Strategy, state: Any, evaluator: Any,
                    recorded: list[dict[str, Any]], history_path: str) -> list[dict[str, Any]]:
  """Restores the latest checkpoint (if any), runs the remaining rounds with
  history, checkpoints and best_arch.json; returns all records."""
  space = evaluator.space
  restored = _restore(checkpointer, config, strategy, space)
  start_round, start_index = 0, 0
  if restored is not None:
    state, start_round, start_index = restored
  if len(recorded) < start_index:
    raise ValueError(
        f"{history_path} has {len(recorded)} records but the checkpoint counts {start_index}: "
        "the history was truncated or replaced. Restore it or use a new workdir.")
  if recorded:
    print(f"resuming from round {start_round} ({start_index} evaluations checkpointed, "
          f"{len(recorded) - start_index} more to replay from {history_path})")
  records, started = list(recorded[:start_index]), time.time()
  metric, report = evaluator.search_metric, evaluator.report_metric
  with history.Writer(history_path) as writer:
    for result in rounds(strategy, state, evaluator, config.budget, start_round, start_index,
                         replay=recorded, on_record=writer.append):
      records += result.records
      arrays, record = strategy.save(result.state)
      checkpointer.save(result.round + 1, {"strategy": arrays, "round": np.int64(result.round)},
                        {"round": result.round + 1, "num_evaluations": len(records),
                         "strategy": record, "fingerprint": _fingerprint(config)})
      best = best_record(records)
      _write_json(os.path.join(workdir, "best_arch.json"), {
          "space": space.signature(), "arch": best["arch"], "string": best["string"],
          "hash": best["hash"], "index": best["index"], metric: best["score"],
          **best["report"]})
      print(f"round {result.round:3d} | evaluations {len(records):4d}/{config.budget} | best "
            f"{metric} {best['score']:.3f} ({report} {best['report'][report]:.3f}) | "
            f"{time.time() - started:.1f}s", flush=True)
  return records


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any] | None:
  """Runs (or resumes) the search in ``workdir``; returns the best record."""
  space, evaluator, strategy, state = setup(config)
  os.makedirs(workdir, exist_ok=True)
  history_path = os.path.join(workdir, "history.jsonl")
  recorded = history.read(history_path)
  with Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=2) as checkpointer:
    records = _resume_and_run(config, workdir, checkpointer, strategy, state, evaluator,
                              recorded, history_path)
  best = best_record(records)
  metric, report = evaluator.search_metric, evaluator.report_metric
  if best is not None:
    plot = viz.plot_search(records, os.path.join(workdir, "plots", "search.png"), metric, report,
                           title=f"{config.strategy} on {space.signature()}")
    print(f"best after {len(records)} evaluations: {best['string']} {metric} {best['score']:.3f} "
          f"{report} {best['report'][report]:.3f}; plot {plot}")
  return best
