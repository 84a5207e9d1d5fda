"""The ``nao_ws`` job: NAO with weight sharing (reference §6.1), then the winner's training.

``run(config, workdir)``:

1. pool <- ``search.pool_size`` distinct random archs; the supernet trains for
   ``supernet.epochs`` with one arch drawn uniformly from the pool per minibatch.
2. Every ``search.eval_every`` epochs (and after the last): every pool arch is
   scored on the same fixed validation images (one history record each, round
   = scoring number); unless it is the last epoch the strategy proposes up to
   ``search.new_per_round`` unseen archs that replace the worst of the pool:
   ``nao`` fits the controller (warm start) on the pool's min-max normalised
   scores and moves the top ``search.top_k`` (reference §5), filling a shortfall
   with the predictor's best one-token neighbours of the top
   ``nao.neighbours_of_top`` (0: none, the reference); ``random``
   (Random-WS) and ``reinforce`` (ENAS-like) are the ask/tell strategies, told
   the supernet scores of the archs they proposed.
3. The top ``search.rerank_top`` of the last scored pool are trained from
   scratch by the child trainer (``config.rerank``; drop path ramps over that
   short run's own steps, §9 item 14) and ranked by validation accuracy:
   ``workdir/best_arch.json``.
4. If ``config.final.enabled``, the winner is trained by the child trainer
   (``config.final``) in ``workdir/final`` and its test accuracy reported.

Checkpoints (``workdir/checkpoints``: supernet train state, controller, pool,
round) are written at every multiple of ``supernet.ckpt_every_steps`` steps
and after every round (the last step ends one); the child trainings
checkpoint themselves. A rerun with the same workdir resumes exactly (history
lines written after the last checkpoint are dropped and recomputed
identically). Plots in ``workdir/plots``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from nao_jax import configuration
from nao_jax import controller
from nao_jax import data as data_lib
from nao_jax import history
from nao_jax import search
from nao_jax import spaces
from nao_jax import strategies
from nao_jax import viz
from nao_jax import viz_cells
from nao_jax.checkpoint import Checkpointer
from nao_jax.evaluators import supernet as supernet_eval
from nao_jax.evaluators.tabular import Evaluation
from nao_jax.models import supernet as supernet_lib
from nao_jax.training import loop

STRATEGY_NAMES = ("nao", "random", "reinforce")


def _check(config: ml_collections.ConfigDict) -> None:
  s = config.search
  checks = [
      ("strategy", config.strategy in STRATEGY_NAMES, f"choose one of {STRATEGY_NAMES}"),
      ("search.pool_size", s.pool_size >= 2, "must be >= 2"),
      ("search.eval_every", s.eval_every >= 1, "must be >= 1 epoch"),
      ("search.new_per_round", 0 <= s.new_per_round < s.pool_size,
       "must be in [0, pool_size)"),
      ("search.top_k", s.top_k >= 1, "must be >= 1"),
      ("search.rerank_top", 1 <= s.rerank_top <= s.pool_size, "must be in [1, pool_size]"),
      ("nao.neighbours_of_top", config.nao.neighbours_of_top >= 0, "must be >= 0"),
      ("supernet.ckpt_every_steps", config.supernet.ckpt_every_steps >= 1, "must be >= 1"),
  ]
  for field, ok, fix in checks:
    if not ok:
      value = config
      for part in field.split("."):
        value = value[part]
      raise configuration.ConfigError(f"config.{field}: {fix} (got {value!r}).")


def _write_json(path: str, data: Any) -> None:
  temporary = path + ".tmp"
  with open(temporary, "w") as f:
    json.dump(data, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(temporary, path)


def _truncate_history(path: str, keep: int) -> list[dict[str, Any]]:
  """The first ``keep`` records of ``path``, dropping later lines (written after the
  checkpoint; they are recomputed identically)."""
  records = history.read(path)
  if len(records) < keep:
    raise ValueError(f"{path} has {len(records)} records but the checkpoint counts {keep}: "
                     "the history was truncated or replaced. Restore it or use a new workdir.")
  if len(records) > keep:
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
      for record in records[:keep]:
        f.write(json.dumps(record, sort_keys=True) + "\n")
    os.replace(temporary, path)
  return records[:keep]


def _child_config(config: ml_collections.ConfigDict, section: str,
                  arch_path: str) -> ml_collections.ConfigDict:
  """The child trainer's config (``training.loop``) from ``config.<section>``."""
  child = ml_collections.ConfigDict(config[section].to_dict())
  child.job, child.seed, child.arch = "train", config.seed, arch_path
  child.data = ml_collections.ConfigDict(config.data.to_dict())
  child.data.split = config[section].split
  return child


class Search:
  """The search's mutable state: the pool, the strategy and the supernet."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    _check(config)
    self.config, self.workdir = config, workdir
    with configuration.section("space"):
      self.space = spaces.get("nasnet", **config.space)
    with configuration.section("data"):
      data = data_lib.load(config.data)
    with configuration.section("supernet"):
      self.evaluator = supernet_eval.SupernetEvaluator(self.space, data, config.supernet,
                                                       config.seed)
    seed, space = config.seed, self.space
    pool = strategies.sample_unseen(space, strategies.numpy_rng(seed, 3), config.search.pool_size,
                                    set())
    self.pool = supernet_lib.arch_arrays(space, pool)
    self.round, self.num_records, self.predictions = 0, 0, None
    self.strategy = None if config.strategy == "nao" else strategies.get(config.strategy)
    with configuration.section(config.strategy):
      if self.strategy is None:
        self.policy = controller.init(jax.random.fold_in(jax.random.key(seed), 0), space,
                                      config.nao.controller)
      else:
        self.policy = self.strategy.init(seed, space, config[config.strategy])
    self.checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=2)

  # ---- checkpoints ----------------------------------------------------------

  def _policy_arrays(self):
    return self.policy if self.strategy is None else self.strategy.save(self.policy)[0]

  def save(self) -> None:
    metadata = {"round": self.round, "num_records": self.num_records,
                "pool": self.pool.tolist(), "step": self.evaluator.step,
                "predictions": self.predictions,
                "policy": None if self.strategy is None else self.strategy.save(self.policy)[1]}
    self.checkpointer.save(self.evaluator.step,
                           {"supernet": self.evaluator.host_state(),
                            "policy": self._policy_arrays()}, metadata)

  def restore(self) -> bool:
    if self.checkpointer.latest_step() is None:
      return False
    target = {"supernet": self.evaluator.host_state(), "policy": self._policy_arrays()}
    arrays, metadata = self.checkpointer.restore(target)
    self.evaluator.load_state(arrays["supernet"])
    if self.strategy is None:
      self.policy = arrays["policy"]
    else:
      self.policy = self.strategy.restore(self.config.seed, self.space,
                                          self.config[self.config.strategy], arrays["policy"],
                                          metadata["policy"])
    self.pool = np.asarray(metadata["pool"], np.int32)
    self.round, self.num_records = int(metadata["round"]), int(metadata["num_records"])
    self.predictions = metadata["predictions"]
    return True

  # ---- one round ------------------------------------------------------------

  def archs(self, arrays: np.ndarray) -> list[Any]:
    return [self.space.from_values(a.reshape(-1)) for a in arrays]

  def score_round(self, writer: history.Writer, epoch: int) -> list[dict[str, Any]]:
    """Scores the pool, records it, sorts it best first; returns the records."""
    started = time.time()
    scores = self.evaluator.score_arrays(self.pool)
    seconds = time.time() - started
    order = np.argsort(-scores, kind="stable")
    self.pool, scores = self.pool[order], scores[order]
    predictions = (np.asarray(self.predictions)[order] if self.predictions is not None
                   else None)
    records = []
    for i, (arch, score) in enumerate(zip(self.archs(self.pool), scores)):
      report = {"supernet_accuracy": float(score), "epoch": epoch}
      if predictions is not None:
        report["predicted"] = float(predictions[i])
      record = search.make_record(self.space, arch, Evaluation(float(score), report,
                                                               seconds / len(scores)),
                                  self.num_records, self.round)
      writer.append(record)
      records.append(record)
      self.num_records += 1
    print(f"round {self.round} (epoch {epoch}): scored {len(scores)} archs in {seconds:.1f}s; "
          f"best {scores[0]:.4f} median {np.median(scores):.4f}", flush=True)
    if predictions is not None:
      viz_cells.plot_predictions(predictions, scores, os.path.join(
          self.workdir, "plots", f"predicted_vs_measured_round{self.round}.png"),
          title=f"round {self.round}: controller prediction vs supernet accuracy")
    return records

  def propose(self, scores: np.ndarray) -> None:
    """New archs replace the worst of the (sorted) pool."""
    config, space = self.config, self.space
    n = config.search.new_per_round
    seen = {space.arch_hash(a) for a in self.archs(self.pool)}
    if self.strategy is None:
      key = jax.random.fold_in(jax.random.key(config.seed), 1 + self.round)
      tokens = np.stack([space.encode(a) for a in self.archs(self.pool)])
      self.policy, metrics = controller.fit(self.policy, tokens, scores, key, maximize=True)
      generated, _ = controller.generate(self.policy, space, tokens[:config.search.top_k], n,
                                         seen)
      seen |= {space.arch_hash(space.decode(t)) for t in generated}
      neighbours = self._best_neighbours(tokens, n - len(generated), seen)
      new = [space.decode(t) for t in (*generated, *neighbours)]
      print(f"  controller: {', '.join(f'{k} {v:.3f}' for k, v in metrics.items())}; "
            f"{len(new)} new archs ({len(generated)} by gradient steps, {len(neighbours)} "
            "predictor-ranked neighbours)", flush=True)
    else:
      new, self.policy = self.strategy.ask(self.policy, n)
      new = [a for a in new if space.arch_hash(a) not in seen]
      if new:
        self.policy = self.strategy.tell(self.policy, new, self.evaluator.score(new).tolist())
    if new:
      self.pool = np.concatenate([self.pool[:len(self.pool) - len(new)],
                                  supernet_lib.arch_arrays(space, new)])
    self.predictions = None
    if self.strategy is None:
      pool_tokens = np.stack([space.encode(a) for a in self.archs(self.pool)])
      self.predictions = np.asarray(controller.predict(self.policy, pool_tokens)).tolist()

  def _best_neighbours(self, tokens: np.ndarray, n: int, seen: set[str]) -> np.ndarray:
    """Up to ``n`` unseen one-token neighbours of the ``nao.neighbours_of_top`` best
    pool archs (``tokens`` int ``[P, L]``, best first), the highest predicted
    first: the fill when the gradient steps decode fewer than ``n`` new archs."""
    top = self.config.nao.neighbours_of_top
    if n <= 0 or not top:
      return np.zeros((0, self.space.length), np.int32)
    candidates = strategies.one_token_neighbours(self.space, tokens[:top], seen)
    if not len(candidates):
      return candidates
    predicted = np.asarray(controller.predict(self.policy, candidates))
    return candidates[np.sort(np.argsort(-predicted, kind="stable")[:n])]


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs (or resumes) the NAO-WS search, re-ranking and final training."""
  os.makedirs(workdir, exist_ok=True)
  s = Search(config, workdir)
  ev = s.evaluator
  resumed = s.restore()
  history_path = os.path.join(workdir, "history.jsonl")
  records = _truncate_history(history_path, s.num_records)
  if resumed:
    print(f"resumed at supernet step {ev.step}/{ev.total_steps}, round {s.round}", flush=True)
  if ev.step < ev.total_steps:
    params = sum(int(np.prod(x.shape[1:])) for x in jax.tree.leaves(ev.state.params))
    print(f"NAO-WS ({config.strategy}) on {len(ev.devices)} {ev.devices[0].device_kind}: pool "
          f"of {len(s.pool)} archs, supernet of {ev.model.total_cells} cells (C="
          f"{ev.model.features}, {params:,} parameters) for {ev.total_steps} steps; its first "
          "step includes compiling the train step (minutes on a CPU)", flush=True)
  spe, started = ev.steps_per_epoch, time.time()
  last = None
  with history.Writer(history_path) as writer:
    every = config.supernet.ckpt_every_steps
    while ev.step < ev.total_steps:
      epoch_end = (ev.step // spe + 1) * spe
      next_save = (ev.step // every + 1) * every
      stop = min(epoch_end, next_save)
      begin, t0 = ev.step, time.time()
      metrics = ev.train_steps(s.pool, stop)
      rate = (stop - begin) * config.supernet.batch_size / max(time.time() - t0, 1e-9)
      epoch = stop // spe
      print(f"supernet step {stop}/{ev.total_steps} epoch {epoch} loss {metrics['loss']:.4f} "
            f"acc {metrics['accuracy']:.4f} lr {float(ev.schedule(stop - 1)):.5f} "
            f"{rate:.1f} images/s | {time.time() - started:.0f}s", flush=True)
      scored = stop == epoch_end and (epoch % config.search.eval_every == 0
                                      or epoch == config.supernet.epochs)
      if scored:
        last = s.score_round(writer, epoch)
        records += last
        if epoch < config.supernet.epochs:
          s.propose(np.asarray([r["score"] for r in last]))
        s.round += 1
      if scored or stop == next_save:  # The last step always ends a scored epoch.
        s.save()
  s.checkpointer.close()
  if last is None:  # Resumed after the last scoring: the last round is in the history.
    last = [r for r in records if r["round"] == records[-1]["round"]]
  plots = os.path.join(workdir, "plots")
  viz.plot_search(records, os.path.join(plots, "search.png"), "supernet_accuracy",
                  "supernet_accuracy", title=f"NAO-WS ({config.strategy}) supernet accuracy")
  return _finish(config, workdir, s.space, last)


def _train_child(config: ml_collections.ConfigDict, section: str, arch_path: str,
                 directory: str) -> dict[str, Any]:
  """The child trainer's results in ``directory``, training only if it has none yet
  (a resumed pipeline does not retrain a finished child)."""
  done = os.path.join(directory, "results.json")
  if os.path.exists(done):
    with open(done) as f:
      return json.load(f)
  return loop.run(_child_config(config, section, arch_path), directory)


def _finish(config: ml_collections.ConfigDict, workdir: str, space: Any,
            last: list[dict[str, Any]]) -> dict[str, Any]:
  """Re-ranks the top of the last pool by short training, trains the winner."""
  candidates = []
  for i, record in enumerate(last[:config.search.rerank_top]):
    directory = os.path.join(workdir, "rerank", str(i))
    os.makedirs(directory, exist_ok=True)
    arch_path = os.path.join(directory, "arch.json")
    _write_json(arch_path, {"space": space.signature(), **record["arch"]})
    print(f"re-ranking {i + 1}/{config.search.rerank_top}: {record['string']}", flush=True)
    result = _train_child(config, "rerank", arch_path, directory)
    candidates.append((result["best_valid_accuracy"], -i, record, arch_path))
  valid, _, best, arch_path = max(candidates, key=lambda c: (c[0], c[1]))
  summary = {"space": space.signature(), **best["arch"], "string": best["string"],
             "hash": best["hash"], "supernet_accuracy": best["score"],
             "rerank_valid_accuracy": valid}
  best_path = os.path.join(workdir, "best_arch.json")
  _write_json(best_path, summary)
  arch = space.from_json(json.dumps({k: summary[k] for k in ("space", "normal", "reduction")}))
  plots = os.path.join(workdir, "plots")
  for cell_type in ("normal", "reduction"):
    viz_cells.plot_cell(space, arch, cell_type, os.path.join(plots, f"best_{cell_type}_cell.png"))
  print(f"winner: {best['string']} (re-rank valid accuracy {valid:.4f}); wrote {best_path}",
        flush=True)
  if config.final.enabled:
    final = _train_child(config, "final", best_path, os.path.join(workdir, "final"))
    summary["final_test_accuracy"] = final["final_test_accuracy"]
    _write_json(best_path, summary)
    print(f"final test accuracy of the winner: {final['final_test_accuracy']:.4f}", flush=True)
  return summary
