"""A NASNet-style cell of the ``nasnet`` space (reference §1.1, §7.1) and drop path.

A cell reads the outputs of the two previous cells (``s0`` = cell k-2, ``s1`` =
cell k-1), calibrates them to ``features`` channels and the cell's input
resolution, runs its nodes (``node = drop_path(op1(x)) + drop_path(op2(y))``)
and concatenates its loose ends. In a reduction cell the ops fed by ``s0`` /
``s1`` have stride 2, and loose ``s0`` / ``s1`` are ``FactorizedReduce``d
before the concat.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nao_jax.models import ops
from nao_jax.spaces.nasnet import Node, loose_ends


def drop_path_keep_prob(cell_index: int, num_cells: int, keep_prob: float,
                        step: jnp.ndarray, total_steps: int) -> jnp.ndarray:
  """The reference's keep probability of drop path for a cell at a step.

  ``p_l = 1 - (l + 1) / L * (1 - keep_prob)`` grows the drop rate with depth;
  ``p_t = 1 - (t + 1) / T * (1 - p_l)`` ramps it up linearly over training.

  Args:
    cell_index: ``l``, 0-based index of the cell in the network.
    num_cells: ``L``, the number of cells (3N + 2).
    keep_prob: the final keep probability of the last cell.
    step: ``t``, the 0-based global training step (scalar, may be traced).
    total_steps: ``T``, the number of training steps of the whole run.

  Returns:
    A float32 scalar in ``[keep_prob, 1]``.
  """
  cell_keep = 1.0 - (cell_index + 1) / num_cells * (1.0 - keep_prob)
  progress = jnp.minimum((jnp.asarray(step, jnp.float32) + 1.0) / total_steps, 1.0)
  return 1.0 - progress * (1.0 - cell_keep)


def drop_path(x: jnp.ndarray, keep_prob: jnp.ndarray, noise: jnp.ndarray) -> jnp.ndarray:
  """Zeros whole examples of ``x`` ``[batch, ...]`` with probability ``1 - keep_prob``
  and scales the rest by ``1 / keep_prob``: example ``b`` is kept where
  ``noise[b] < keep_prob`` (``noise`` float ``[batch]``, uniform in ``[0, 1)``)."""
  scale = jnp.where(noise < keep_prob, 1.0 / keep_prob, 0.0).astype(x.dtype)
  return x * scale.reshape((x.shape[0],) + (1,) * (x.ndim - 1))


def drop_path_noise(rng: jax.Array, branches: int, batch: int) -> jnp.ndarray:
  """The uniform noise of ``drop_path`` for ``branches`` branches: float32
  ``[branches, batch]`` in ONE random draw (a key and a draw per branch made
  the optimized HLO of a quickstart-size child's train step 16% larger)."""
  return jax.random.uniform(rng, (branches, batch))


class Cell(nn.Module):
  """One cell.

  Attributes:
    nodes: the cell's nodes (op ids index ``op_names``).
    op_names: names of the op set's ops.
    op_set: 'nao11' or 'ws5' (decides the avg pool padding rule).
    features: channels ``C`` of every state; the output has ``C * len(loose ends)``.
    reduction: whether ops on ``s0``/``s1`` have stride 2.
    use_drop_path: apply drop path to every branch (training only).
  """
  nodes: tuple[Node, ...]
  op_names: tuple[str, ...]
  op_set: str
  features: int
  reduction: bool
  use_drop_path: bool = False
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, s0: jnp.ndarray, s1: jnp.ndarray, train: bool,
               keep_prob: jnp.ndarray | None = None) -> jnp.ndarray:
    """Args: ``s0`` ``[B, H0, W0, C0]``, ``s1`` ``[B, H, W, C1]`` (``H0`` is ``H`` or
    ``2H``), ``keep_prob`` the drop-path keep probability of this cell and step.
    Returns ``[B, H', W', C * len(loose ends)]`` with ``H' = H / 2`` if reduction."""
    common = dict(bn_axis_name=self.bn_axis_name, dtype=self.dtype)
    # Input calibration (the reference's MaybeCalibrateSize).
    if s0.shape[1] == 2 * s1.shape[1]:
      s0 = ops.FactorizedReduce(self.features, **common, name="calibrate_s0")(nn.relu(s0), train)
    elif s0.shape[-1] != self.features:
      s0 = ops.ReLUConvBN(self.features, (1, 1), **common, name="calibrate_s0")(s0, train)
    if s1.shape[-1] != self.features:
      s1 = ops.ReLUConvBN(self.features, (1, 1), **common, name="calibrate_s1")(s1, train)

    states = [s0, s1]
    noise = (drop_path_noise(self.make_rng("dropout"), 2 * len(self.nodes), s1.shape[0])
             if train and self.use_drop_path else None)
    for i, node in enumerate(self.nodes):
      branches = []
      for b, (state, op_id) in enumerate(((node.input1, node.op1), (node.input2, node.op2))):
        stride = 2 if self.reduction and state < 2 else 1
        op = ops.make_op(self.op_names[op_id], self.features, stride, self.op_set,
                         name=f"node{i}_branch{b}", **common)
        out = op(states[state], train)
        if noise is not None:
          out = drop_path(out, keep_prob, noise[2 * i + b])
        branches.append(out)
      states.append(branches[0] + branches[1])

    outputs = []
    for state in loose_ends(self.nodes):
      out = states[state]
      if self.reduction and state < 2:
        out = ops.FactorizedReduce(self.features, **common, name=f"reduce_s{state}")(out, train)
      outputs.append(out)
    return jnp.concatenate(outputs, axis=-1)
