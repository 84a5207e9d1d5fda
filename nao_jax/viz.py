"""Plots (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nao_jax import atomic  # noqa: E402


def best_so_far(records: Sequence[dict[str, Any]], report_metric: str) -> tuple[np.ndarray, np.ndarray]:
  """Best search score after each evaluation and the reported metric of that best
  arch: float ``[N]`` each (ties keep the earlier arch; a failed evaluation,
  whose score is None, changes nothing)."""
  best_score, best_report, scores, reports = -np.inf, np.nan, [], []
  for record in records:
    if record["score"] is not None and record["score"] > best_score:
      best_score, best_report = record["score"], record["report"].get(report_metric, np.nan)
    scores.append(best_score)
    reports.append(best_report)
  return np.asarray(scores), np.asarray(reports)


def plot_search(records: Sequence[dict[str, Any]], path: str, search_metric: str,
                report_metric: str, title: str = "") -> str:
  """Writes a PNG of best-so-far search score (and its reported metric) against
  evaluations; returns ``path``."""
  scores, reports = best_so_far(records, report_metric)
  steps = np.arange(1, len(records) + 1)
  evaluated = np.array([np.nan if r["score"] is None else r["score"] for r in records], float)
  figure, axis = plt.subplots(figsize=(6, 4))
  axis.plot(steps, evaluated, ".", color="0.7", label="evaluated")
  axis.step(steps, scores, where="post", label=f"best {search_metric}")
  axis.step(steps, reports, where="post", label=f"{report_metric} of the best")
  axis.set_xlabel("evaluations")
  axis.set_ylabel("accuracy")
  if len(records):
    low = np.nanpercentile(evaluated, 25)
    high = np.nanmax(np.concatenate([scores, reports]))
    axis.set_ylim(low, high + 0.05 * (high - low + 1e-9))
  axis.set_title(title)
  axis.grid(alpha=0.3)
  axis.legend(loc="lower right")
  figure.tight_layout()
  atomic.write_figure(path, figure)
  plt.close(figure)
  return path


def plot_curves(curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], path: str,
                ylabel: str, title: str = "", optimum: float | None = None) -> str:
  """Mean curves with bands: ``curves[name] = (x [N], mean [N], half_width [N])``."""
  figure, axis = plt.subplots(figsize=(7, 4.5))
  for name, (x, mean, half_width) in curves.items():
    axis.plot(x, mean, label=name)
    axis.fill_between(x, mean - half_width, mean + half_width, alpha=0.2)
  if optimum is not None:
    axis.axhline(optimum, color="k", linestyle="--", linewidth=0.8, label="optimum")
  # Zoom past the first tenth of the budget, where the curves separate.
  start = max(len(x) // 10 for x, _, _ in curves.values())
  low = min(float(np.min((mean - half_width)[start:])) for _, mean, half_width in curves.values())
  high = max([optimum or -np.inf] + [float(np.max(m + h)) for _, m, h in curves.values()])
  axis.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
  axis.set_xlabel("evaluations")
  axis.set_ylabel(ylabel)
  axis.set_title(title)
  axis.grid(alpha=0.3)
  axis.legend(loc="lower right")
  figure.tight_layout()
  atomic.write_figure(path, figure)
  plt.close(figure)
  return path


def plot_scatter(points: dict[str, tuple[np.ndarray, np.ndarray]], path: str, xlabel: str,
                 ylabel: str, title: str = "") -> str:
  """One marker series per name: ``points[name] = (x [N], y [N])``, each with
  its mean as a larger marker. Returns ``path``."""
  figure, axis = plt.subplots(figsize=(6, 4.5))
  for name, (x, y) in points.items():
    dots = axis.plot(x, y, "o", alpha=0.5)
    axis.plot(np.mean(x), np.mean(y), "D", markersize=9, color=dots[0].get_color(), label=name)
  axis.set_xlabel(xlabel)
  axis.set_ylabel(ylabel)
  axis.set_title(title, fontsize=8)
  axis.grid(alpha=0.3)
  axis.legend(loc="lower right")
  figure.tight_layout()
  atomic.write_figure(path, figure)
  plt.close(figure)
  return path
