"""The NASNet-style child network of NAO's final training (reference §7.1).

Stem ``Conv3x3(3 -> 3F) + BN``; ``3N + 2`` cells with reduction cells at
indices ``N`` and ``2N + 1`` (channels ``C`` start at ``F`` and double at each
reduction); an auxiliary head after the second reduction cell (training only);
global average pool, dropout and a linear classifier.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nao_jax.models import cells
from nao_jax.models import ops
from nao_jax.spaces.nasnet import NasnetArch

AUX_NAME = "aux_head"


class AuxHead(nn.Module):
  """Auxiliary classifier on the 8x8 maps after the second reduction cell:
  ReLU, AvgPool(5, stride 3) -> 2x2, Conv1x1(128)-BN-ReLU, Conv2x2(768)-BN-ReLU, Linear."""
  num_classes: int
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    if min(x.shape[1:3]) < 5:
      raise ValueError(f"model.auxiliary: the auxiliary head pools 5x5 windows of the maps "
                       f"after the second reduction cell, which are {x.shape[1]}x{x.shape[2]} "
                       "here (images smaller than 20x20); set model.auxiliary=False.")
    x = nn.avg_pool(nn.relu(x), (5, 5), (3, 3), "VALID")
    for i, (features, kernel) in enumerate(((128, 1), (768, 2))):
      x = nn.Conv(features, (kernel, kernel), padding="VALID", use_bias=False,
                  kernel_init=ops.kaiming_normal, dtype=self.dtype, param_dtype=jnp.float32,
                  name=f"conv_{i}")(x)
      x = nn.relu(ops.BatchNorm(self.bn_axis_name, self.dtype, name=f"norm_{i}")(x, train))
    x = x.reshape(x.shape[0], -1)
    return nn.Dense(self.num_classes, kernel_init=ops.kaiming_normal, dtype=self.dtype,
                    param_dtype=jnp.float32, name="classifier")(x)


class NasnetNetwork(nn.Module):
  """A child network of the ``nasnet`` space.

  Attributes:
    arch: the normal and reduction cells.
    op_names: the op set's op names (``space.ops``).
    op_set: 'nao11' or 'ws5' (``space.op_set.name``).
    num_classes: classifier outputs.
    num_cells: ``N``, normal cells per stage (3N + 2 cells in all).
    features: ``F``, channels of the first stage (the stem has 3F).
    auxiliary: build the auxiliary head (used when training).
    dropout_keep_prob: keep probability of the dropout before the classifier.
    drop_path_keep_prob: final keep probability of drop path in the last cell;
      1.0 disables drop path.
    bn_axis_name: pmap axis over which BatchNorm averages its batch statistics.
    dtype: compute dtype (parameters stay float32).
  """
  arch: NasnetArch
  op_names: tuple[str, ...]
  op_set: str
  num_classes: int = 10
  num_cells: int = 6
  features: int = 36
  auxiliary: bool = True
  dropout_keep_prob: float = 0.6
  drop_path_keep_prob: float = 0.8
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32

  @property
  def total_cells(self) -> int:
    return 3 * self.num_cells + 2

  @property
  def reduction_indices(self) -> tuple[int, int]:
    return self.num_cells, 2 * self.num_cells + 1

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool, step: jnp.ndarray | int = 0,
               total_steps: int = 1) -> tuple[jnp.ndarray, jnp.ndarray | None]:
    """Args: ``images`` float ``[B, H, W, 3]`` (normalised); ``train`` selects batch
    statistics, dropout, drop path and the auxiliary head; ``step`` / ``total_steps``
    set the drop-path ramp. Returns ``(logits [B, classes], aux_logits [B, classes]``
    or None when not training or without auxiliary head)."""
    common = dict(bn_axis_name=self.bn_axis_name, dtype=self.dtype)
    x = images.astype(self.dtype)
    x = ops.conv(3 * self.features, (3, 3), dtype=self.dtype, name="stem_conv")(x)
    x = ops.BatchNorm(**{"axis_name": self.bn_axis_name, "dtype": self.dtype},
                      name="stem_norm")(x, train)
    s0 = s1 = x
    features = self.features
    use_drop_path = self.drop_path_keep_prob < 1.0
    aux_logits = None
    for index in range(self.total_cells):
      reduction = index in self.reduction_indices
      if reduction:
        features *= 2
      keep = (cells.drop_path_keep_prob(index, self.total_cells, self.drop_path_keep_prob,
                                        step, total_steps) if use_drop_path else None)
      cell = cells.Cell(self.arch.reduction if reduction else self.arch.normal,
                        self.op_names, self.op_set, features, reduction,
                        use_drop_path=use_drop_path, name=f"cell_{index}", **common)
      s0, s1 = s1, cell(s0, s1, train, keep)
      if self.auxiliary and train and index == self.reduction_indices[1]:
        aux_logits = AuxHead(self.num_classes, **common, name=AUX_NAME)(s1, train)
    x = jnp.mean(s1, axis=(1, 2))
    x = nn.Dropout(rate=1.0 - self.dropout_keep_prob, deterministic=not train)(x)
    logits = nn.Dense(self.num_classes, kernel_init=ops.kaiming_normal, dtype=self.dtype,
                      param_dtype=jnp.float32, name="classifier")(x)
    return logits.astype(jnp.float32), (
        None if aux_logits is None else aux_logits.astype(jnp.float32))


def abstract_variables(model: NasnetNetwork, image_size: int = 32) -> dict[str, Any]:
  """The variables' shapes and dtypes (``jax.eval_shape``; nothing is allocated),
  including the auxiliary head's."""
  unbound = model.clone(bn_axis_name=None)
  images = jax.ShapeDtypeStruct((2, image_size, image_size, 3), jnp.float32)
  rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
  return jax.eval_shape(lambda r, x: unbound.init(r, x, train=True), rngs, images)


def count_params(params: Any) -> tuple[int, int]:
  """``(network parameters without the auxiliary head, auxiliary head parameters)``
  of a params pytree (arrays or ``ShapeDtypeStruct``s)."""
  main = aux = 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    size = int(np.prod(leaf.shape))
    if any(getattr(k, "key", None) == AUX_NAME for k in path):
      aux += size
    else:
      main += size
  return main, aux
