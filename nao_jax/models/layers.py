"""Convolution and max-pool primitives shared by the child networks and the supernet.

They compute exactly what ``lax.conv_general_dilated`` and ``lax.reduce_window``
compute (PyTorch padding: ``k // 2`` for convs, ``-inf`` for max pools), written
in the forms XLA runs fastest, above all on CPU where a train step of NAONet-A
spends most of its time in these ops:

* a 1x1 conv is a strided slice and a matrix product (its backward pass is two
  matrix products instead of XLA:CPU's generic convolution gradients);
* a depthwise conv on CPU is a sum of ``k * k`` shifted, per-channel scaled copies
  of the input (XLA:CPU has no fast grouped convolution: 20-25x faster forward);
  on GPU and TPU it stays a grouped ``lax`` convolution;
* a max pool is separable: the maximum over rows, then over columns. Its gradient
  is a chain of element-wise selects instead of ``select_and_scatter`` (3-5x
  faster on CPU). Where several inputs tie for the maximum the gradient may be
  split between them instead of going to the first one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _shifted_windows(x: jnp.ndarray, axis: int, size: int, stride: int) -> list[jnp.ndarray]:
  """The ``size`` strided slices of ``x`` along ``axis`` (already padded) whose
  element ``i`` is window ``i``'s tap ``t``, for each tap ``t``."""
  count = (x.shape[axis] - size) // stride + 1
  windows = []
  for tap in range(size):
    index = [slice(None)] * x.ndim
    index[axis] = slice(tap, tap + stride * (count - 1) + 1, stride)
    windows.append(x[tuple(index)])
  return windows


def conv2d(x: jnp.ndarray, kernel: jnp.ndarray,
           strides: tuple[int, int] = (1, 1)) -> jnp.ndarray:
  """Dense conv of ``x`` ``[B, H, W, Cin]`` with ``kernel`` ``[kh, kw, Cin, Cout]``,
  zero padding ``k // 2`` on each side -> ``[B, H', W', Cout]``."""
  kh, kw = kernel.shape[:2]
  if kh == kw == 1:
    return jnp.dot(x[:, ::strides[0], ::strides[1], :], kernel[0, 0])
  return jax.lax.conv_general_dilated(
      x, kernel, strides, ((kh // 2, kh // 2), (kw // 2, kw // 2)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def depthwise_conv2d(x: jnp.ndarray, kernel: jnp.ndarray, stride: int = 1) -> jnp.ndarray:
  """Depthwise conv of ``x`` ``[B, H, W, C]`` with ``kernel`` ``[k, k, 1, C]``
  (``feature_group_count = C``), zero padding ``k // 2`` -> ``[B, H', W', C]``."""
  kh, kw = kernel.shape[:2]
  if jax.default_backend() != "cpu":
    return jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), ((kh // 2, kh // 2), (kw // 2, kw // 2)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=x.shape[-1])
  padded = jnp.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
  out = None
  for i, rows in enumerate(_shifted_windows(padded, 1, kh, stride)):
    for j, window in enumerate(_shifted_windows(rows, 2, kw, stride)):
      term = window * kernel[i, j, 0]
      out = term if out is None else out + term
  return out


def max_pool(x: jnp.ndarray, size: int, stride: int, padding: tuple[int, int, int, int],
             pad_value: float = -jnp.inf) -> jnp.ndarray:
  """Max pool of ``x`` ``[B, H, W, C]`` over ``size x size`` windows with ``stride``
  after padding (top, bottom, left, right) with ``pad_value``."""
  top, bottom, left, right = padding
  padded = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)),
                   constant_values=jnp.asarray(pad_value, x.dtype))
  rows = _max(_shifted_windows(padded, 1, size, stride))
  return _max(_shifted_windows(rows, 2, size, stride))


def _max(arrays: list[jnp.ndarray]) -> jnp.ndarray:
  out = arrays[0]
  for array in arrays[1:]:
    out = jnp.maximum(out, array)
  return out
