"""A summary of finished or running workdirs, as text and PNGs.

  python -m nao_jax.report --workdir=A [--workdir=B ...] [--out=DIR]

For each workdir: its job, strategy, space and seed (``config.json``), the
evaluations so far and the best arch with its scores (``history.jsonl``,
``best_arch.json``), and the final results of a training job or of a NAO-WS
winner (``results.json``, ``final/results.json``). Writes ``DIR/search.png``,
the best-so-far curves of every search workdir on one plot (step: evaluations),
and for a nasnet best arch its cell diagrams (``DIR/<name>_normal_cell.png``).
``--out`` defaults to ``A/report``. Reads only: a running job is not disturbed.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

from absl import app
from absl import flags
from etils import epath
import numpy as np

from nao_jax import history
from nao_jax import viz
from nao_jax import viz_cells
from nao_jax.training import loop

_WORKDIRS = flags.DEFINE_multi_string("workdir", [], "A job's workdir; repeat to compare.")
_OUT = flags.DEFINE_string("out", "", "Directory for the PNGs (default: the first workdir/report).")


def _json(path: str) -> dict[str, Any] | None:
  file = epath.Path(path)
  return json.loads(file.read_text()) if file.exists() else None


def summarise(workdir: str) -> dict[str, Any]:
  """What a workdir holds: ``config``, ``records`` (history, index order),
  ``best`` (best_arch.json) and ``results`` (a training job's or the NAO-WS
  winner's results.json), each None or empty when absent. ``ValueError`` if
  ``workdir`` holds no job."""
  config = _json(os.path.join(workdir, "config.json"))
  if config is None:
    raise ValueError(f"--workdir={workdir} holds no config.json: not a nao_jax workdir.")
  history_path = os.path.join(workdir, "history.jsonl")
  records = sorted(history.read(history_path), key=lambda r: r["index"])
  results = (_json(os.path.join(workdir, "results.json")) or
             _json(os.path.join(workdir, "final", "results.json")))
  return {"workdir": workdir, "config": config, "records": records,
          "best": _json(os.path.join(workdir, "best_arch.json")), "results": results}


def describe(summary: dict[str, Any]) -> str:
  """The text block of one workdir."""
  config, records, best, results = (summary[k] for k in ("config", "records", "best",
                                                         "results"))
  lines = [f"== {summary['workdir']}",
           f"job {config.get('job')}, strategy {config.get('strategy', '-')}, "
           f"seed {config.get('seed')}, evaluator "
           f"{(config.get('evaluator') or {}).get('name', '-')}"]
  if records:
    failed = sum(1 for r in records if r.get("failed"))
    lines.append(f"{len(records)} evaluations ({failed} failed), "
                 f"{1 + max(r.get('round', 0) for r in records)} rounds")
  if best:
    scores = ", ".join(f"{k} {v:.4f}" for k, v in best.items()
                       if isinstance(v, float) and not isinstance(v, bool))
    lines.append(f"best: {best.get('string', best.get('arch'))}")
    if scores:
      lines.append(f"      {scores}")
  if results:
    lines.append(f"final training: test accuracy {results['final_test_accuracy']:.4f}, "
                 f"best valid {results.get('best_valid_accuracy')}, "
                 f"{results.get('params', 0):,} params, {results.get('epochs')} epochs")
  return "\n".join(lines)


def _curve(records: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  scores, _ = viz.best_so_far(records, "")
  x = np.arange(1, len(scores) + 1)
  return x, scores, np.zeros_like(scores)


def write_plots(summaries: Sequence[dict[str, Any]], out: str) -> list[str]:
  """The comparison plot (searches with at least one score) and the cell diagrams
  of nasnet winners; returns the paths written."""
  written = []
  curves = {}
  for summary in summaries:
    records = [r for r in summary["records"] if r.get("score") is not None]
    if records:
      name = epath.Path(summary["workdir"]).name
      curves[name] = _curve(summary["records"])
  if curves:
    written.append(viz.plot_curves(curves, os.path.join(out, "search.png"),
                                   "best search score so far", title="search progress"))
  for summary in summaries:
    best = summary["best"]
    if not best or not str(best.get("space", "")).startswith("nasnet("):
      continue
    space, arch = loop.arch_from_record(best, "best_arch.json")
    name = epath.Path(summary["workdir"]).name
    for cell_type in ("normal", "reduction"):
      written.append(viz_cells.plot_cell(space, arch, cell_type,
                                         os.path.join(out, f"{name}_{cell_type}_cell.png")))
  return written


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {list(argv[1:])}; pass --workdir=DIR.")
  if not _WORKDIRS.value:
    raise app.UsageError("pass --workdir=DIR (repeat it to compare runs).")
  try:
    summaries = [summarise(w) for w in _WORKDIRS.value]
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  for summary in summaries:
    print(describe(summary))
  out = _OUT.value or os.path.join(_WORKDIRS.value[0], "report")
  for path in write_plots(summaries, out):
    print(f"wrote {path}")


if __name__ == "__main__":
  app.run(main)
