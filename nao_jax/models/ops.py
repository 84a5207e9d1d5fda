"""Cell operations of the ``nao11`` and ``ws5`` op sets (reference §1.2, §7.1).

Every op maps ``[batch, H, W, C]`` to ``[batch, H / stride, W / stride, C]``.
Padding follows the PyTorch reference exactly: convs pad ``k // 2``; max pools
pad with -inf; NAO's (``nao11``) avg pools count the zero padding in the mean
while NAO-WS's (``ws5``) avg pool does not; the 2x2 pools zero-pad one row and
column at the bottom and right (zeros then also compete in the max pool).
Identity with stride 2 is a ``FactorizedReduce``. Convs are ReLU-conv-BN with
Kaiming-normal kernels (fan in, gain sqrt(2), untruncated, as
``torch.nn.init.kaiming_normal_``).
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from nao_jax.models import layers

# torch.nn.init.kaiming_normal_ defaults: fan_in, gain sqrt(2), plain normal.
kaiming_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")

Dtype = Any


class BatchNorm(nn.Module):
  """PyTorch-default BatchNorm (momentum 0.1, eps 1e-5, affine), optionally with
  statistics over all devices of ``axis_name``."""
  axis_name: str | None = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    return _BatchNormLayer(momentum=0.9, epsilon=1e-5,
                           axis_name=self.axis_name if train else None,
                           dtype=self.dtype, name="bn")(x, train)


class _BatchNormLayer(nn.Module):
  """``nn.BatchNorm`` over the last axis (same variables: params ``scale``,
  ``bias``; batch_stats ``mean``, ``var``; same values) with the fused training
  pass of ``layers.batch_norm_train``."""
  momentum: float
  epsilon: float
  axis_name: str | None
  dtype: Dtype

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    features = (x.shape[-1],)
    running_mean = self.variable("batch_stats", "mean", jnp.zeros, features, jnp.float32)
    running_var = self.variable("batch_stats", "var", jnp.ones, features, jnp.float32)
    scale = self.param("scale", nn.initializers.ones, features, jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, features, jnp.float32)
    if not train:
      multiplier = jax.lax.rsqrt(running_var.value + self.epsilon) * scale
      return ((x - running_mean.value) * multiplier + bias).astype(self.dtype)
    initializing = self.is_initializing()
    y, mean, var = layers.batch_norm_train(x, scale, bias, self.epsilon,
                                           None if initializing else self.axis_name)
    if not initializing:
      running_mean.value = self.momentum * running_mean.value + (1 - self.momentum) * mean
      running_var.value = self.momentum * running_var.value + (1 - self.momentum) * var
    return y.astype(self.dtype)


class Conv(nn.Module):
  """A bias-free conv padded by ``k // 2`` on each side (PyTorch ``padding=k//2``),
  dense or depthwise (``groups`` = input channels = ``features``). Its parameter is
  ``kernel`` ``[kh, kw, Cin / groups, features]``, as ``nn.Conv``'s."""
  features: int
  kernel: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  groups: int = 1
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    channels = x.shape[-1]
    if self.groups not in (1, channels) or (self.groups > 1 and self.features != channels):
      raise ValueError(f"Conv supports dense (groups=1) or depthwise convs (groups = input "
                       f"channels = features); got groups={self.groups}, {channels} -> "
                       f"{self.features} channels.")
    kernel = self.param("kernel", kaiming_normal,
                        (*self.kernel, channels // self.groups, self.features), jnp.float32)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    if self.groups > 1:
      if self.strides[0] != self.strides[1]:
        raise ValueError(f"depthwise convs take equal strides, got {self.strides}.")
      return layers.depthwise_conv2d(x, kernel, self.strides[0])
    return layers.conv2d(x, kernel, self.strides)


def conv(features: int, kernel: tuple[int, int], strides: tuple[int, int] = (1, 1),
         groups: int = 1, dtype: Dtype = jnp.float32, name: str | None = None) -> Conv:
  """A ``Conv`` (bias-free, padded by ``k // 2``, Kaiming-normal kernel)."""
  return Conv(features, kernel, strides, groups, dtype, name=name)


class ReLUConvBN(nn.Module):
  """ReLU, conv ``kernel`` with ``strides``, BN.

  Attributes:
    features: output channels.
    kernel: (kh, kw); padding is ``k // 2``.
    strides: (sh, sw).
  """
  features: int
  kernel: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  bn_axis_name: str | None = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    x = conv(self.features, self.kernel, self.strides, dtype=self.dtype, name="conv")(nn.relu(x))
    return BatchNorm(self.bn_axis_name, self.dtype, name="norm")(x, train)


class FactorizedReduce(nn.Module):
  """Halves H and W: two 1x1 stride-2 convs of ``features // 2`` channels, the
  second on the input shifted by one pixel, concatenated, then BN. No ReLU."""
  features: int
  bn_axis_name: str | None = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    if self.features % 2:
      raise ValueError(f"FactorizedReduce needs an even channel count, got {self.features}.")
    half = self.features // 2
    first = conv(half, (1, 1), (2, 2), dtype=self.dtype, name="conv_1")(x)
    # Pad right/bottom by one and drop the first row and column: the stride-2
    # 1x1 conv then reads the odd pixels.
    shifted = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))[:, 1:, 1:, :]
    second = conv(half, (1, 1), (2, 2), dtype=self.dtype, name="conv_2")(shifted)
    out = jnp.concatenate([first, second], axis=-1)
    return BatchNorm(self.bn_axis_name, self.dtype, name="norm")(out, train)


class FactorizedConv(nn.Module):
  """``conv_1xk_kx1``: ReLU-Conv(1xk, stride (1,s))-BN-ReLU-Conv(kx1, stride (s,1))-BN."""
  features: int
  size: int
  stride: int = 1
  bn_axis_name: str | None = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    x = ReLUConvBN(self.features, (1, self.size), (1, self.stride), self.bn_axis_name,
                   self.dtype, name="row")(x, train)
    return ReLUConvBN(self.features, (self.size, 1), (self.stride, 1), self.bn_axis_name,
                      self.dtype, name="column")(x, train)


class SepConv(nn.Module):
  """NAO-WS separable conv: twice [ReLU, depthwise kxk, pointwise 1x1, BN]; only
  the first depthwise conv has the stride."""
  features: int
  size: int
  stride: int = 1
  bn_axis_name: str | None = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    channels = x.shape[-1]
    for i, stride in enumerate((self.stride, 1)):
      x = nn.relu(x)
      x = conv(channels, (self.size, self.size), (stride, stride), groups=channels,
               dtype=self.dtype, name=f"depthwise_{i}")(x)
      x = conv(self.features if i else channels, (1, 1), dtype=self.dtype,
               name=f"pointwise_{i}")(x)
      x = BatchNorm(self.bn_axis_name, self.dtype, name=f"norm_{i}")(x, train)
    return x


def pool(x: jnp.ndarray, kind: str, size: int, stride: int, include_pad: bool) -> jnp.ndarray:
  """Max or avg pool of ``size`` with PyTorch padding (see module docstring)."""
  if size == 2:  # Explicit zero padding at the bottom and right, then no padding.
    x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
    padding = (0, 0, 0, 0)
  else:
    padding = (size // 2,) * 4
  if kind == "max":
    return layers.max_pool(x, size, stride, padding)
  return layers.avg_pool(x, size, stride, padding, count_include_pad=include_pad)


class Identity(nn.Module):
  """Identity; a ``FactorizedReduce`` to ``features`` channels when strided."""
  features: int
  stride: int = 1
  bn_axis_name: str | None = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    if self.stride == 1:
      return x
    return FactorizedReduce(self.features, self.bn_axis_name, self.dtype, name="reduce")(x, train)


class Pool(nn.Module):
  """A parameter-free pooling op."""
  kind: str
  size: int
  stride: int = 1
  include_pad: bool = True

  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    del train
    return pool(x, self.kind, self.size, self.stride, self.include_pad)


# Op name -> builder(features, stride, op_set, bn_axis_name, dtype, name) -> module.
OpBuilder = Callable[..., nn.Module]


def _conv_op(size: int) -> OpBuilder:
  def build(features, stride, op_set, bn_axis_name, dtype, name):
    del op_set
    return ReLUConvBN(features, (size, size), (stride, stride), bn_axis_name, dtype, name=name)
  return build


def _factorized_op(size: int) -> OpBuilder:
  def build(features, stride, op_set, bn_axis_name, dtype, name):
    del op_set
    return FactorizedConv(features, size, stride, bn_axis_name, dtype, name=name)
  return build


def _sep_op(size: int) -> OpBuilder:
  def build(features, stride, op_set, bn_axis_name, dtype, name):
    del op_set
    return SepConv(features, size, stride, bn_axis_name, dtype, name=name)
  return build


def _pool_op(kind: str, size: int) -> OpBuilder:
  def build(features, stride, op_set, bn_axis_name, dtype, name):
    del features, bn_axis_name, dtype
    # NAO's avg pools count the padding (PyTorch default); NAO-WS's exclude it.
    return Pool(kind, size, stride, include_pad=(op_set == "nao11"), name=name)
  return build


def _identity_op(features, stride, op_set, bn_axis_name, dtype, name):
  del op_set
  return Identity(features, stride, bn_axis_name, dtype, name=name)


OPS: dict[str, OpBuilder] = {
    "identity": _identity_op,
    "conv_1x1": _conv_op(1),
    "conv_3x3": _conv_op(3),
    "conv_1x3_3x1": _factorized_op(3),
    "conv_1x7_7x1": _factorized_op(7),
    "sep_conv_3x3": _sep_op(3),
    "sep_conv_5x5": _sep_op(5),
    "max_pool_2x2": _pool_op("max", 2),
    "max_pool_3x3": _pool_op("max", 3),
    "max_pool_5x5": _pool_op("max", 5),
    "avg_pool_2x2": _pool_op("avg", 2),
    "avg_pool_3x3": _pool_op("avg", 3),
    "avg_pool_5x5": _pool_op("avg", 5),
}


def make_op(op_name: str, features: int, stride: int, op_set: str,
            bn_axis_name: str | None = None, dtype: Dtype = jnp.float32,
            name: str | None = None) -> nn.Module:
  """The module of ``op_name`` (an entry of ``OPS``) for ``op_set`` ('nao11' or 'ws5')."""
  if op_name not in OPS:
    raise ValueError(f"unknown op {op_name!r}; known ops: {sorted(OPS)}.")
  if op_set not in ("nao11", "ws5"):
    raise ValueError(f"unknown op set {op_set!r}; choose 'nao11' or 'ws5'.")
  return OPS[op_name](features, stride, op_set, bn_axis_name, dtype, name)
