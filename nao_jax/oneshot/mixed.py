"""DARTS' continuous relaxation (Liu et al., ICLR 2019, §2.2) of the ``nasnet`` ws5 and
``nb201`` spaces: architecture parameters, mixed-op networks, and their discretisation.

Architecture parameters ``alphas`` are a dict of float32 ``[edges, ops]`` arrays;
``mixing_weights`` is their softmax over the ops, and every edge computes
``sum_o weight[o] * op_o(x)`` (a mixed op). The networks take the mixing
weights, not ``alphas``, so a one-hot weight row runs exactly the chosen op.

``nasnet`` (ws5): ``{"normal": [E, 5], "reduction": [E, 5]}`` with
``E = B (B + 3) / 2`` edges per cell, DARTS' cell: node ``i`` sums a mixed op on
*every* earlier state ``j`` in ``0..i+1`` (edge ``i (i + 3) / 2 + j``), and the
cell output concatenates the ``B`` nodes (the next cell calibrates it to ``C``
channels, as DARTS' ``preprocess`` does). Each edge owns the weights of its 5
ops: node ``i``'s are one ``models.supernet.BranchParams`` with one copy per
input ``j``, the NAO-WS supernet's per-input layout. Discretisation (DARTS'
``genotype``) maps the cell to OUR space, where a node has exactly two branches:
node ``i`` keeps its two strongest incoming edges, strength = the largest
weight of an op other than ``none`` (ws5 has no ``none``; the rule skips it for
op sets that do), each with its strongest non-``none`` op; branch 1 is the
stronger edge, branch 2 the other (ties: the lower state index). Node 0 has
only two candidates, so it always reads ``s0`` and ``s1``; the two branches of a
node therefore never share an input, a subset of the space the NAO strategies
search. Loose ends of the found cell are concatenated by the child network.

``nb201``: ``{"cell": [6, 5]}``, one cell's ``alphas`` shared by all 15 cells
(NAS-Bench-201's DARTS, Dong & Yang 2020); each edge keeps its argmax op,
``none`` included, as that benchmark's ``genotype`` does.

Deviations from DARTS' search network (``model_search.py``), stated where they
apply: no BatchNorm after the pooling ops (so a one-hot mixed op equals the
child network's op), and the separable convs' BatchNorms have affine
parameters (the NAO-WS weight layout; DARTS' have none). BatchNorm always uses
the statistics of the batch it sees, as in DARTS' search.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nao_jax.models import layers
from nao_jax.models import nb201 as nb201_model
from nao_jax.models import ops
from nao_jax.models import supernet as supernet_lib
from nao_jax.spaces import nb201 as nb201_space
from nao_jax.spaces.nasnet import CELL_TYPES, NasnetArch, NasnetSpace, Node
from nao_jax.spaces.nb201 import Nb201Arch, Nb201Space

NONE = "none"
NB201_OPS = {name: i for i, name in enumerate(nb201_space.OPS)}


def first_edge(node: int) -> int:
  """The index of node ``node``'s edge from state 0 in a nasnet cell's ``alphas``."""
  return node * (node + 3) // 2


def alpha_shapes(space: Any) -> dict[str, tuple[int, int]]:
  """``{name: (edges, ops)}`` of ``space``'s architecture parameters (module docstring)."""
  if isinstance(space, NasnetSpace):
    supernet_lib.check_space(space)
    return {cell: (first_edge(space.nodes), len(space.ops)) for cell in CELL_TYPES}
  if isinstance(space, Nb201Space):
    return {"cell": (len(nb201_space.EDGES), len(nb201_space.OPS))}
  raise ValueError(f"DARTS relaxes the nasnet (ws5) and nb201 spaces, not "
                   f"{space.signature()}; set config.space accordingly.")


def init_alphas(space: Any, rng: np.random.Generator, scale: float) -> dict[str, np.ndarray]:
  """DARTS' initial ``alphas``: ``scale`` times standard normal, float32 (module docstring)."""
  return {name: (scale * rng.standard_normal(shape)).astype(np.float32)
          for name, shape in alpha_shapes(space).items()}


def mixing_weights(alphas: Any) -> Any:
  """Softmax over the ops (last axis) of every ``[edges, ops]`` array of ``alphas``."""
  return jax.tree.map(lambda a: jax.nn.softmax(a, axis=-1), alphas)


def entropy(alphas: Any) -> float:
  """The mean over all edges of the entropy (nats) of their op distribution."""
  rows = [np.asarray(jax.nn.softmax(jnp.asarray(a, jnp.float32), -1), np.float64)
          for a in jax.tree.leaves(alphas)]
  rows = np.concatenate([r.reshape(-1, r.shape[-1]) for r in rows])
  return float(np.mean(-np.sum(rows * np.log(np.maximum(rows, 1e-30)), -1)))


def discretize(space: Any, alphas: Any) -> Any:
  """The arch of ``space`` that ``alphas`` selects (module docstring for the rule)."""
  alpha_shapes(space)
  weights = {k: np.asarray(jax.nn.softmax(jnp.asarray(v, jnp.float32), -1), np.float64)
             for k, v in alphas.items()}
  if isinstance(space, Nb201Space):
    return space.check(Nb201Arch(ops=tuple(int(o) for o in np.argmax(weights["cell"], -1))))
  kept = np.array([name != NONE for name in space.ops])
  cells = []
  for cell in CELL_TYPES:
    nodes = []
    for i in range(space.nodes):
      rows = weights[cell][first_edge(i):first_edge(i) + i + 2][:, kept]
      strongest = np.argsort(-rows.max(-1), kind="stable")[:2]
      op_ids = np.flatnonzero(kept)[rows.argmax(-1)]
      j1, j2 = (int(j) for j in strongest)
      nodes.append(Node(j1, int(op_ids[j1]), j2, int(op_ids[j2])))
    cells.append(tuple(nodes))
  return space.check(NasnetArch(normal=cells[0], reduction=cells[1]))


def logits(model: nn.Module, params: Any, images: jnp.ndarray, weights: Any) -> jnp.ndarray:
  """``model(images, weights)`` in batch-statistics mode: float32 ``[batch, classes]``
  (running BatchNorm statistics a network keeps are computed and dropped)."""
  out, _ = model.apply({"params": params}, images, weights, mutable=["batch_stats"])
  return out


# ---- nasnet (ws5) ----------------------------------------------------------------------


def mixed_ws5_op(x: jnp.ndarray, weights: jnp.ndarray, sep: dict[int, dict[str, jnp.ndarray]],
                 reduce: dict[str, jnp.ndarray] | None, stride: int,
                 axis_name: str | None) -> jnp.ndarray:
  """``sum_o weights[o] * op_o(x)`` over the 5 ws5 ops in id order.

  Args:
    x: ``[batch, H, W, C]``.
    weights: ``[5]`` mixing weights.
    sep: ``{3: params, 5: params}``, one copy of each sep conv's weights
      (``models.supernet.sep_conv``).
    reduce: one copy of a ``FactorizedReduce``'s weights (the identity when
      ``stride`` is 2), else None.
    stride: 1, or 2 on a reduction cell's edges from its inputs.

  Returns:
    ``[batch, H / stride, W / stride, C]``.
  """
  identity = x if stride == 1 else supernet_lib.factorized_reduce(x, reduce, axis_name)
  outputs = [supernet_lib.sep_conv(x, sep[3], stride, axis_name),
             supernet_lib.sep_conv(x, sep[5], stride, axis_name),
             ops.pool(x, "avg", 3, stride, include_pad=False),
             ops.pool(x, "max", 3, stride, include_pad=False),
             identity]
  return sum(w.astype(y.dtype) * y for w, y in zip(weights, outputs))


class MixedCell(nn.Module):
  """One DARTS cell of the ``nasnet`` ws5 relaxation.

  Attributes:
    nodes: ``B``.
    features: ``C`` channels of every node.
    reduction: whether the edges from the cell inputs have stride 2.
    bn_axis_name: pmap axis of the BatchNorm statistics.
  """
  nodes: int
  features: int
  reduction: bool
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, s0: jnp.ndarray, s1: jnp.ndarray, weights: jnp.ndarray) -> jnp.ndarray:
    """``s0``, ``s1``: the previous cells' outputs; ``weights``: ``[E, 5]`` mixing
    weights. Returns the ``B`` nodes concatenated, ``[batch, H', W', B * C]``."""
    c, axis = self.features, self.bn_axis_name
    if s0.shape[1] == 2 * s1.shape[1]:
      s0 = supernet_lib.FactorizedReduce(c, axis, name="calibrate_s0")(nn.relu(s0))
    elif s0.shape[-1] != c:
      s0 = supernet_lib.ReLUConvBN(c, axis, name="calibrate_s0")(s0)
    if s1.shape[-1] != c:
      s1 = supernet_lib.ReLUConvBN(c, axis, name="calibrate_s1")(s1)
    states = [s0, s1]
    for i in range(self.nodes):
      params = supernet_lib.BranchParams(i, c, self.reduction, name=f"node{i}")()
      # The edges from s0 and s1 (the first two) stride in a reduction cell.
      num_strided = 2 if self.reduction else 0
      total = 0.0
      for first, end, stride in ((0, num_strided, 2), (num_strided, i + 2, 1)):
        if first < end:
          total = total + _edge_sum(states[first:end], weights[first_edge(i) + first:
                                                               first_edge(i) + end],
                                    params, first, stride, axis)
      states.append(total)
    return jnp.concatenate(states[2:], axis=-1)


def _edge_sum(inputs: list[jnp.ndarray], weights: jnp.ndarray,
              params: dict[str, jnp.ndarray], first: int, stride: int,
              axis_name: str | None) -> jnp.ndarray:
  """``sum_j mixed_ws5_op(inputs[j], weights[j], copy first + j of params)`` as one
  ``lax.scan`` over the edges: the compiled program holds one mixed op, not one
  per edge (XLA:CPU compile time grows with the number of convolutions).

  Args:
    inputs: the ``k`` input states of equal shape ``[batch, H, W, C]``.
    weights: their ``[k, 5]`` mixing weights.
    params: a node's ``BranchParams`` (copies on axis 0); copies ``first..first + k``
      are used (``reduce_*`` only when ``stride`` is 2).
  Returns:
    ``[batch, H / stride, W / stride, C]``.
  """
  count = len(inputs)
  copies = {k: v[first:first + count] for k, v in params.items()
            if stride == 2 or not k.startswith("reduce_")}

  def edge(x, w, copy):
    sep = {size: supernet_lib.strip_prefix(copy, f"sep{size}_")
           for size in supernet_lib.SEP_SIZES}
    reduce = supernet_lib.strip_prefix(copy, "reduce_") if stride == 2 else None
    return mixed_ws5_op(x, w, sep, reduce, stride, axis_name)

  def step(total, edge_inputs):
    return total + edge(*edge_inputs), None

  xs = (jnp.stack(inputs), weights, copies)
  shape = jax.eval_shape(edge, *jax.tree.map(lambda v: v[0], xs))
  total, _ = jax.lax.scan(step, jnp.zeros(shape.shape, shape.dtype), xs)
  return total


class MixedSupernet(nn.Module):
  """DARTS' search network on the ``nasnet`` ws5 space: the NAO-WS supernet's macro
  (``models.supernet.Supernet``: stem ``3C``, ``3N + 2`` cells, reductions at ``N``
  and ``2N + 1`` doubling ``C``, global pool, linear classifier; DARTS' own
  8-cell network is ``N = 2``) with ``MixedCell``s and no drop path.

  Attributes:
    nodes: ``B``; num_cells: ``N``; features: ``C`` of the first stage;
    num_classes: classifier outputs; bn_axis_name: pmap axis of BatchNorm statistics.
  """
  nodes: int = 4
  num_cells: int = 2
  features: int = 16
  num_classes: int = 10
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, images: jnp.ndarray, weights: dict[str, jnp.ndarray]) -> jnp.ndarray:
    """``images`` float ``[batch, H, W, 3]`` (normalised), ``weights``
    ``{"normal": [E, 5], "reduction": [E, 5]}`` -> float32 logits ``[batch, classes]``."""
    axis, stem_features = self.bn_axis_name, 3 * self.features
    stem = self.param("stem_conv", ops.kaiming_normal, (3, 3, images.shape[-1], stem_features))
    x = supernet_lib.batch_norm(
        supernet_lib.conv2d(images, stem),
        self.param("stem_scale", nn.initializers.ones, (stem_features,)),
        self.param("stem_bias", nn.initializers.zeros, (stem_features,)), axis)
    s0 = s1 = x
    features = self.features
    reductions = (self.num_cells, 2 * self.num_cells + 1)
    for index in range(3 * self.num_cells + 2):
      reduction = index in reductions
      features *= 2 if reduction else 1
      cell = MixedCell(self.nodes, features, reduction, axis, name=f"cell_{index}")
      s0, s1 = s1, cell(s0, s1, weights["reduction" if reduction else "normal"])
    x = jnp.mean(s1.astype(jnp.float32), axis=(1, 2))
    return nn.Dense(self.num_classes, kernel_init=ops.kaiming_normal, name="classifier")(x)


# ---- nb201 ---------------------------------------------------------------------------------


def _relu_conv_bn(x: jnp.ndarray, kernel: jnp.ndarray, axis_name: str | None) -> jnp.ndarray:
  """ReLU, conv (padding ``k // 2``), BatchNorm of the batch without affine parameters."""
  y = layers.conv2d(nn.relu(x), kernel.astype(x.dtype))
  ones = jnp.ones((y.shape[-1],), jnp.float32)
  return supernet_lib.batch_norm(y, ones, jnp.zeros_like(ones), axis_name)


class MixedNb201Cell(nn.Module):
  """A NAS-Bench-201 cell (``models.nb201.Nb201Cell``) whose every edge is a mixed op
  of the 5 ops: ``[batch, H, W, C]`` -> ``[batch, H, W, C]``."""
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jnp.ndarray, weights: jnp.ndarray) -> jnp.ndarray:
    """``weights``: ``[6, 5]`` mixing weights, edges in ``spaces.nb201.EDGES`` order."""
    channels = x.shape[-1]
    nodes = [x]
    for target in range(1, 4):
      total = jnp.zeros_like(x)
      for edge, (source, edge_target) in enumerate(nb201_space.EDGES):
        if edge_target != target:
          continue
        h, w = nodes[source], weights[edge].astype(x.dtype)
        kernels = {size: self.param(f"edge_{source}_{target}_nor_conv_{size}x{size}",
                                    ops.kaiming_normal, (size, size, channels, channels))
                   for size in (1, 3)}
        # ``none`` contributes nothing: its weight only normalises the others.
        total = (total + w[NB201_OPS["skip_connect"]] * h
                 + w[NB201_OPS["nor_conv_1x1"]] * _relu_conv_bn(h, kernels[1], self.bn_axis_name)
                 + w[NB201_OPS["nor_conv_3x3"]] * _relu_conv_bn(h, kernels[3], self.bn_axis_name)
                 + w[NB201_OPS["avg_pool_3x3"]] * layers.avg_pool(h, 3, 1, (1, 1, 1, 1),
                                                                  count_include_pad=False))
      nodes.append(total)
    return nodes[3]


class MixedNb201Network(nn.Module):
  """NAS-Bench-201's network (``models.nb201.Nb201Network``: stem, three stages of
  ``num_cells`` cells, residual reductions, BN-ReLU, pool, classifier) with
  ``MixedNb201Cell``s sharing one ``[6, 5]`` weight matrix; the modules outside
  the cells are the child network's, run in batch-statistics mode.

  Attributes:
    num_classes: classifier outputs; num_cells: cells per stage (benchmark: 5);
    features: channels of the first stage (benchmark: 16); bn_axis_name: pmap axis.
  """
  num_classes: int = 10
  num_cells: int = 5
  features: int = 16
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, images: jnp.ndarray, weights: dict[str, jnp.ndarray]) -> jnp.ndarray:
    """``images`` float ``[batch, H, W, 3]`` (normalised), ``weights`` ``{"cell": [6, 5]}``
    -> float32 logits ``[batch, classes]``. Needs ``mutable=["batch_stats"]`` (``logits``)."""
    axis = self.bn_axis_name
    x = ops.conv(self.features, (3, 3), name="stem_conv")(images)
    x = ops.BatchNorm(axis, name="stem_norm")(x, True)
    for stage in range(3):
      if stage:
        x = nb201_model.ResidualReduction(self.features * 2 ** stage, axis,
                                          name=f"reduction_{stage}")(x, True)
      for index in range(self.num_cells):
        x = MixedNb201Cell(axis, name=f"cell_{stage}_{index}")(x, weights["cell"])
    x = nn.relu(ops.BatchNorm(axis, name="last_norm")(x, True))
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, name="classifier")(x).astype(jnp.float32)


def network(space: Any, num_classes: int, num_cells: int, features: int) -> nn.Module:
  """The mixed-op network of ``space``: ``MixedSupernet`` or ``MixedNb201Network``."""
  alpha_shapes(space)
  if isinstance(space, Nb201Space):
    return MixedNb201Network(num_classes=num_classes, num_cells=num_cells, features=features)
  return MixedSupernet(nodes=space.nodes, num_cells=num_cells, features=features,
                       num_classes=num_classes)
