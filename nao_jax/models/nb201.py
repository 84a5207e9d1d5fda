"""The NAS-Bench-201 network (Dong & Yang, ICLR 2020) of an ``nb201`` cell.

A 3x3 conv stem (``features`` channels) and BN; three stages of ``num_cells``
copies of the cell at ``features``, 2x and 4x channels, with a residual
reduction block between stages (ReLU-conv3x3-BN stride 2, ReLU-conv3x3-BN, plus
a 2x2 average pool and a bias-free 1x1 conv on the shortcut); BN, ReLU, global
average pooling and a linear classifier. The benchmark trained it with
``num_cells = 5`` and ``features = 16``.

In the cell, node 0 is the cell's input and node j the sum over i < j of the
op on edge i -> j applied to node i; node 3 is the output. Ops: ``none`` (no
contribution), ``skip_connect``, ``nor_conv_1x1`` / ``nor_conv_3x3`` (ReLU-conv-BN),
``avg_pool_3x3`` (stride 1, padding excluded from the mean).

The call signature is ``NasnetNetwork``'s, so child training runs it unchanged;
it has no auxiliary head and no drop path.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from nao_jax.models import layers
from nao_jax.models import ops
from nao_jax.spaces import nb201 as nb201_space


class Nb201Cell(nn.Module):
  """One cell: ``[B, H, W, C]`` -> ``[B, H, W, C]``."""
  edge_ops: tuple[int, ...]
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    features = x.shape[-1]
    nodes = [x]
    for target in range(1, 4):
      total = jnp.zeros_like(x)
      for edge, (source, edge_target) in enumerate(nb201_space.EDGES):
        if edge_target != target:
          continue
        name = nb201_space.OPS[self.edge_ops[edge]]
        inputs = nodes[source]
        if name == "skip_connect":
          total = total + inputs
        elif name == "avg_pool_3x3":
          total = total + layers.avg_pool(inputs, 3, 1, (1, 1, 1, 1), count_include_pad=False)
        elif name != "none":
          size = 1 if name == "nor_conv_1x1" else 3
          total = total + ops.ReLUConvBN(features, (size, size), bn_axis_name=self.bn_axis_name,
                                         dtype=self.dtype, name=f"edge_{source}_{target}")(
                                             inputs, train)
      nodes.append(total)
    return nodes[3]


class ResidualReduction(nn.Module):
  """NAS-Bench-201's reduction block: ``[B, H, W, C]`` -> ``[B, H/2, W/2, features]``."""
  features: int
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    common = dict(bn_axis_name=self.bn_axis_name, dtype=self.dtype)
    y = ops.ReLUConvBN(self.features, (3, 3), (2, 2), **common, name="conv_a")(x, train)
    y = ops.ReLUConvBN(self.features, (3, 3), **common, name="conv_b")(y, train)
    shortcut = layers.avg_pool(x, 2, 2, (0, 0, 0, 0))
    shortcut = ops.conv(self.features, (1, 1), dtype=self.dtype, name="shortcut")(shortcut)
    return shortcut + y


class Nb201Network(nn.Module):
  """The benchmark's network of ``arch`` (``spaces.nb201.Nb201Arch``).

  Attributes:
    arch: the cell.
    num_classes: classifier outputs.
    num_cells: cells per stage (the benchmark: 5).
    features: channels of the first stage (the benchmark: 16).
    bn_axis_name: pmap axis over which BatchNorm averages its batch statistics.
    dtype: compute dtype (parameters stay float32).
  """
  arch: nb201_space.Nb201Arch
  num_classes: int = 10
  num_cells: int = 5
  features: int = 16
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool, step: jnp.ndarray | int = 0,
               total_steps: int = 1) -> tuple[jnp.ndarray, None]:
    """``images`` float ``[B, H, W, 3]`` (normalised) -> ``(logits [B, classes], None)``;
    ``step`` and ``total_steps`` are accepted for the common signature and unused."""
    del step, total_steps
    common = dict(bn_axis_name=self.bn_axis_name, dtype=self.dtype)
    x = ops.conv(self.features, (3, 3), dtype=self.dtype, name="stem_conv")(
        images.astype(self.dtype))
    x = ops.BatchNorm(self.bn_axis_name, self.dtype, name="stem_norm")(x, train)
    for stage in range(3):
      if stage:
        x = ResidualReduction(self.features * 2 ** stage, **common,
                              name=f"reduction_{stage}")(x, train)
      for index in range(self.num_cells):
        x = Nb201Cell(self.arch.ops, **common, name=f"cell_{stage}_{index}")(x, train)
    x = nn.relu(ops.BatchNorm(self.bn_axis_name, self.dtype, name="last_norm")(x, train))
    x = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                      name="classifier")(x)
    return logits.astype(jnp.float32), None
