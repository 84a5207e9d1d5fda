"""The NAS-Bench-Macro network (Su et al., CVPR 2021) of a ``macro`` arch.

A 3x3 conv stem (``features`` channels), BN, ReLU; three stages of 2, 3 and 3
searchable layers, the first layer of each stage with stride 2 and twice the
channels; a 1x1 conv to 1280 channels, BN, ReLU, global average pooling and a
linear classifier. The benchmark trained it with ``features = 32``.

Each layer is one of the space's choices: ``0`` identity (a bias-free 1x1 conv
and BN where the stride or the width changes), ``1`` an inverted residual block
(MobileNetV2: 1x1 expansion x3, ReLU, depthwise 3x3, ReLU, 1x1 projection, each
followed by BN; a residual connection where shape allows), ``2`` the same with
expansion x6 and a depthwise 5x5.

The call signature is ``NasnetNetwork``'s, so child training runs it unchanged;
it has no auxiliary head and no drop path.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from nao_jax.models import ops
from nao_jax.spaces import macro as macro_space

STAGES = (2, 3, 3)
HEAD_FEATURES = 1280
# Layer choice -> (expansion, depthwise kernel); choice 0 is the identity.
BLOCKS = {1: (3, 3), 2: (6, 5)}


class MacroLayer(nn.Module):
  """One searchable layer: ``[B, H, W, Cin]`` -> ``[B, H/stride, W/stride, features]``."""
  choice: int
  features: int
  stride: int
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    norm = lambda name: ops.BatchNorm(self.bn_axis_name, self.dtype, name=name)  # noqa: E731
    strides = (self.stride, self.stride)
    same_shape = self.stride == 1 and x.shape[-1] == self.features
    if self.choice == 0:
      if same_shape:
        return x
      y = ops.conv(self.features, (1, 1), strides, dtype=self.dtype, name="project")(x)
      return norm("project_norm")(y, train)
    expansion, kernel = BLOCKS[self.choice]
    hidden = x.shape[-1] * expansion
    y = ops.conv(hidden, (1, 1), dtype=self.dtype, name="expand")(x)
    y = nn.relu(norm("expand_norm")(y, train))
    y = ops.conv(hidden, (kernel, kernel), strides, groups=hidden, dtype=self.dtype,
                 name="depthwise")(y)
    y = nn.relu(norm("depthwise_norm")(y, train))
    y = ops.conv(self.features, (1, 1), dtype=self.dtype, name="project")(y)
    y = norm("project_norm")(y, train)
    return x + y if same_shape else y


class MacroNetwork(nn.Module):
  """The benchmark's network of ``arch`` (``spaces.macro.MacroArch``).

  Attributes:
    arch: the 8 layer choices.
    num_classes: classifier outputs.
    features: stem channels (the benchmark: 32); the stages have 2x, 4x, 8x.
    bn_axis_name: pmap axis over which BatchNorm averages its batch statistics.
    dtype: compute dtype (parameters stay float32).
  """
  arch: macro_space.MacroArch
  num_classes: int = 10
  features: int = 32
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
    x = nn.relu(ops.BatchNorm(self.bn_axis_name, self.dtype, name="stem_norm")(x, train))
    choices = self.arch.layers
    features, layer = self.features, 0
    for stage_layers in STAGES:
      features *= 2
      for index in range(stage_layers):
        x = MacroLayer(int(choices[layer]), features, 2 if index == 0 else 1, **common,
                       name=f"layer_{layer}")(x, train)
        layer += 1
    x = ops.conv(HEAD_FEATURES, (1, 1), dtype=self.dtype, name="head_conv")(x)
    x = nn.relu(ops.BatchNorm(self.bn_axis_name, self.dtype, name="head_norm")(x, train))
    x = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                      name="classifier")(x)
    return logits.astype(jnp.float32), None
