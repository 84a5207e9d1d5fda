"""The ``nao_ws`` job: a search over the weight-sharing supernet, then re-ranking
and the winner's training (NAO-WS, reference §6.1).

``run(config, workdir)`` composes three pieces:

1. The search: ``search.execute`` with the ``supernet`` evaluator
   (``config.evaluator.name``) and the strategy ``config.strategy`` (``nao``
   by default: NAO-WS; ``random``: Random-WS; ``evolution``; ``reinforce``:
   ENAS-like; any registered one). The pool holds ``search.pool_size`` archs;
   the supernet trains on it (one arch drawn uniformly per step) and scores all
   of it every ``search.eval_every`` epochs; in every round but the first the
   strategy proposes ``search.new_per_round`` archs that replace the worst.
   Checkpoints, history and resume are the search driver's.
2. Re-ranking: the top ``search.rerank_top`` of the last scored pool are trained
   from scratch by the child trainer (``config.rerank``; drop path ramps over
   that short run's own steps, §9 item 14) and ranked by validation accuracy:
   ``workdir/best_arch.json``.
3. If ``config.final.enabled``, the winner is trained by the child trainer
   (``config.final``) in ``workdir/final`` and its test accuracy reported.

An ``rnn``-space search (``configs/ptb.py``: the ``rnn_supernet`` evaluator)
re-ranks and trains its cells with the Penn Treebank trainer
(``training.rnn_loop``; ``config.rerank`` and ``config.final`` are its
``model``, ``train`` and ``ckpt`` sections, the corpus is ``config.data``),
ranks them by best validation perplexity and reports the winner's test
perplexity (``rerank_valid_perplexity``, ``final_test_perplexity``).

Each child training checkpoints itself; a rerun skips a child whose
``results.json`` exists. Plots in ``workdir/plots``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, NamedTuple

from etils import epath
import ml_collections

from nao_jax import atomic
from nao_jax import configuration
from nao_jax import search
from nao_jax import viz_cells
from nao_jax.oneshot import darts
from nao_jax.spaces.rnn import RnnSpace
from nao_jax.training import loop
from nao_jax.training import rnn_loop


def _train_cnn(config: ml_collections.ConfigDict, section: str, arch_path: str,
               directory: str) -> dict[str, Any]:
  """``loop.run`` of the arch in ``arch_path`` with ``config.<section>``'s settings."""
  return loop.run(loop.section_config(config, section, arch_path), directory)


def _train_rnn(config: ml_collections.ConfigDict, section: str, arch_path: str,
               directory: str) -> dict[str, Any]:
  """``rnn_loop.run`` of the cell with ``config.<section>``'s model, train and ckpt."""
  child = ml_collections.ConfigDict({name: config[section][name].to_dict()
                                     for name in ("model", "train", "ckpt")})
  child.job, child.seed, child.arch = "ptb", config.seed, arch_path
  child.data = ml_collections.ConfigDict(config.data.to_dict())
  return rnn_loop.run(child, directory)


class _Trainer(NamedTuple):
  """How a space's cells are re-ranked and trained: ``train(config, section,
  arch_path, directory)``, the results' validation and test metric (and the
  direction of the first), and the summary names they take."""
  train: Callable[..., dict[str, Any]]
  valid: str
  higher_is_better: bool
  test: str
  valid_name: str
  test_name: str


_CNN = _Trainer(_train_cnn, "best_valid_accuracy", True, "final_test_accuracy",
                "rerank_valid_accuracy", "final_test_accuracy")
_RNN = _Trainer(_train_rnn, "best_valid_perplexity", False, "test_perplexity",
                "rerank_valid_perplexity", "final_test_perplexity")


def _train_child(trainer: _Trainer, config: ml_collections.ConfigDict, section: str,
                 arch_path: str, directory: str) -> dict[str, Any]:
  """The child trainer's results in ``directory``, training only if it has none yet
  (a resumed pipeline does not retrain a finished child)."""
  done = epath.Path(directory) / "results.json"
  if done.exists():
    return json.loads(done.read_text())
  return trainer.train(config, section, arch_path, directory)


def _arch(space: Any, record: dict[str, Any]) -> Any:
  """The arch of a history record."""
  return space.from_json(json.dumps({"space": space.signature(), **record["arch"]}))


def last_pool(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """The records of the last round that did not fail, best first (ties: the earlier
  record)."""
  last = [r for r in search.succeeded(records) if r["round"] == records[-1]["round"]]
  return sorted(last, key=lambda r: -r["score"])


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs (or resumes) the search, the re-ranking and the final training; returns
  the winner's summary (also ``workdir/best_arch.json``)."""
  configuration.check(config, [
      ("search.rerank_top", 1 <= config.search.rerank_top <= config.search.pool_size,
       "must be in [1, pool_size]")])
  if config.strategy == "darts":  # Gradient-based: no ask/tell, one arch at the end.
    space, found = darts.search(config, workdir)
    pool, search_metric = [found], darts.SEARCH_METRIC
  else:
    evaluator, records = search.execute(config, workdir)
    space, pool, search_metric = evaluator.space, last_pool(records), evaluator.search_metric
  trainer = _RNN if isinstance(space, RnnSpace) else _CNN
  sign = 1.0 if trainer.higher_is_better else -1.0
  candidates = []
  for i, record in enumerate(pool[:config.search.rerank_top]):
    directory = os.path.join(workdir, "rerank", str(i))
    arch_path = atomic.write_json(os.path.join(directory, "arch.json"),
                                  {"space": space.signature(), **record["arch"]})
    print(f"re-ranking {i + 1}/{config.search.rerank_top}: {record['string']}", flush=True)
    result = _train_child(trainer, config, "rerank", arch_path, directory)
    candidates.append((sign * result[trainer.valid], -i, record))
  valid, _, best = max(candidates, key=lambda c: (c[0], c[1]))
  valid *= sign
  summary = {"space": space.signature(), **best["arch"], "string": best["string"],
             "hash": best["hash"], search_metric: best["score"],
             trainer.valid_name: valid}
  best_path = atomic.write_json(os.path.join(workdir, "best_arch.json"), summary)
  if trainer is _CNN:
    arch = _arch(space, best)
    for cell_type in ("normal", "reduction"):
      viz_cells.plot_cell(space, arch, cell_type,
                          os.path.join(workdir, "plots", f"best_{cell_type}_cell.png"))
  words = trainer.valid_name.replace("_", " ").removeprefix("rerank ")
  print(f"winner: {best['string']} (re-rank {words} {valid:.4f}); wrote {best_path}",
        flush=True)
  if config.final.enabled:
    final = _train_child(trainer, config, "final", best_path, os.path.join(workdir, "final"))
    summary[trainer.test_name] = final[trainer.test]
    atomic.write_json(best_path, summary)
    print(f"{trainer.test_name.replace('_', ' ')} of the winner: {final[trainer.test]:.4f}",
          flush=True)
  return summary
