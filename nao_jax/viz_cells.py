"""Plots of the NAO-WS search: a cell drawn as a graph, predicted vs measured scores."""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nao_jax import atomic  # noqa: E402
from nao_jax.spaces.nasnet import loose_ends, state_name  # noqa: E402


def plot_cell(space: Any, arch: Any, cell_type: str, path: str) -> str:
  """Draws one cell (``normal`` or ``reduction``) of a nasnet ``arch``: inputs on
  the left, nodes in the middle, the output (concat of the loose ends) on the
  right; each edge labelled with its op. Returns ``path``."""
  nodes = arch.cell(cell_type)
  count = len(nodes)
  position = {0: (0.0, 0.75), 1: (0.0, 0.25)}
  for i in range(count):
    position[i + 2] = (1.0 + i, 0.5 + (0.3 if i % 2 else -0.3) * (i > 0))
  output = (count + 1.2, 0.5)
  figure, axis = plt.subplots(figsize=(2.2 * (count + 2), 4.5))
  colours = plt.cm.tab10(np.arange(len(space.ops)))
  for i, node in enumerate(nodes):
    for slot, (state, op) in enumerate(((node.input1, node.op1), (node.input2, node.op2))):
      (x0, y0), (x1, y1) = position[state], position[i + 2]
      bend = 0.25 if slot else -0.25
      axis.annotate("", (x1, y1), (x0, y0), arrowprops=dict(
          arrowstyle="-|>", color=colours[op], lw=1.8, connectionstyle=f"arc3,rad={bend}"))
      mx, my = (x0 + x1) / 2, (y0 + y1) / 2 + bend * 0.35 * (1 if x1 > x0 else -1)
      axis.text(mx, my, space.ops[op], fontsize=8, ha="center", va="center", color=colours[op],
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
  for state in loose_ends(nodes):
    (x0, y0) = position[state]
    axis.annotate("", output, (x0, y0), arrowprops=dict(arrowstyle="-|>", color="0.6", lw=1,
                                                        linestyle="--"))
  for state, (x, y) in position.items():
    axis.text(x, y, state_name(state), ha="center", va="center", fontsize=10, bbox=dict(
        boxstyle="round,pad=0.4", fc="#cde" if state < 2 else "#fed", ec="k"))
  axis.text(*output, "concat", ha="center", va="center", fontsize=10,
            bbox=dict(boxstyle="round,pad=0.4", fc="#dfd", ec="k"))
  axis.set_xlim(-0.5, count + 1.8)
  axis.set_ylim(-0.1, 1.1)
  axis.axis("off")
  axis.set_title(f"{cell_type} cell")
  figure.tight_layout()
  atomic.write_figure(path, figure)
  plt.close(figure)
  return path


def plot_predictions(predicted: Sequence[float], measured: Sequence[float], path: str,
                     title: str = "", metric: str = "supernet accuracy") -> str:
  """Scatter of the controller's predictions against the measured scores, with
  the Kendall-style pairwise ranking accuracy in the legend. Returns ``path``."""
  predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
  diff_p = np.sign(predicted[:, None] - predicted[None, :])
  diff_m = np.sign(measured[:, None] - measured[None, :])
  pairs = diff_m != 0
  agreement = float(np.mean(diff_p[pairs] == diff_m[pairs])) if pairs.any() else float("nan")
  figure, axis = plt.subplots(figsize=(5, 4.5))
  axis.scatter(measured, predicted, s=10, alpha=0.6,
               label=f"pairwise ranking accuracy {agreement:.2f}")
  axis.set_xlabel(f"{metric} (measured)")
  axis.set_ylabel("controller prediction")
  axis.set_title(title, fontsize=9)
  axis.grid(alpha=0.3)
  axis.legend(loc="upper left")
  figure.tight_layout()
  atomic.write_figure(path, figure)
  plt.close(figure)
  return path
