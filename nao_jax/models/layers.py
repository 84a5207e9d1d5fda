"""Convolution, pooling and batch-norm primitives shared by the child networks and the supernet.

They compute exactly what ``lax.conv_general_dilated`` and ``lax.reduce_window``
compute (PyTorch padding: ``k // 2`` for convs, ``-inf`` for max pools), written
in the forms XLA runs fastest, above all on CPU where a train step of NAONet-A
spends most of its time in these ops:

* a 1x1 conv is a strided slice and a matrix product (its backward pass is two
  matrix products instead of XLA:CPU's generic convolution gradients; the kernel
  gradient is summed over two halves of the batch in a ``lax.scan``, which keeps
  XLA:CPU from recomputing the operands' producers in the transposed copy it
  makes for that product);
* a larger dense conv on CPU is a ``lax`` convolution whose kernel gradient is
  one matrix product per kernel tap, ``window^T @ grad`` (a ``custom_vjp``):
  1.3-2.5x faster than XLA:CPU's backward-filter convolution on NAONet-A's
  shapes; on GPU and TPU it is a plain ``lax`` convolution;
* a depthwise conv on CPU is a sum of ``k * k`` shifted, per-channel scaled copies
  of the input (XLA:CPU has no fast grouped convolution: 20-25x faster forward),
  and its kernel gradient one variadic reduction of the ``k * k`` products;
  on GPU and TPU it stays a grouped ``lax`` convolution;
* a max pool is separable: the maximum over rows, then over columns. Its gradient
  is a chain of element-wise selects instead of ``select_and_scatter`` (3-5x
  faster on CPU). Where several inputs tie for the maximum the gradient may be
  split between them instead of going to the first one.
* an average pool is separable too: sums over rows, then over columns (its
  gradient is a chain of shifted adds instead of a padded ``reduce_window``);
* a training-mode batch norm has a hand-written backward pass (a ``custom_vjp``)
  of two passes over the input instead of the half dozen of its autodiff.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


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


def _tap_windows(x: jnp.ndarray, kh: int, kw: int, strides: tuple[int, int]) -> list[jnp.ndarray]:
  """The ``kh * kw`` tap windows of ``x`` ``[B, H, W, C]`` zero-padded by ``k // 2``,
  row-major over the taps: window ``(i, j)`` ``[B, H', W', C]`` holds, at each
  output position, the input that kernel tap ``(i, j)`` multiplies."""
  padded = jnp.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
  return [window
          for rows in _shifted_windows(padded, 1, kh, strides[0])
          for window in _shifted_windows(rows, 2, kw, strides[1])]


def conv2d(x: jnp.ndarray, kernel: jnp.ndarray,
           strides: tuple[int, int] = (1, 1)) -> jnp.ndarray:
  """Dense conv of ``x`` ``[B, H, W, Cin]`` with ``kernel`` ``[kh, kw, Cin, Cout]``,
  zero padding ``k // 2`` on each side -> ``[B, H', W', Cout]``."""
  kh, kw = kernel.shape[:2]
  if kh == kw == 1:
    return _pointwise(x[:, ::strides[0], ::strides[1], :], kernel[0, 0])
  if jax.default_backend() != "cpu":
    return _lax_conv(x, kernel, strides)
  return _cpu_conv(x, kernel, tuple(strides))


# A 1x1 conv. Its kernel gradient x^T @ grad is summed over two halves of the
# rows inside a ``lax.scan``: a loop body reads its operands from memory, whereas
# a plain product lets XLA:CPU fuse their whole producer chains (depthwise convs,
# batch-norm backward, the next ops' input gradients) into the transposed copy
# it makes for the product and recompute them there, in a slow transposed order.
@jax.custom_vjp
def _pointwise(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
  return jnp.dot(x, kernel)


def _pointwise_forward(x, kernel):
  return jnp.dot(x, kernel), (x, kernel)


def _pointwise_backward(residuals, grad):
  x, kernel = residuals
  rows = x.size // x.shape[-1]
  chunks = 2 if rows % 2 == 0 else 1
  def add_chunk(total, chunk):
    x_chunk, grad_chunk = chunk
    return total + jnp.dot(x_chunk.T, grad_chunk), None
  kernel_grad, _ = jax.lax.scan(
      add_chunk, jnp.zeros(kernel.shape, jnp.result_type(x, grad)),
      (x.reshape(chunks, rows // chunks, -1), grad.reshape(chunks, rows // chunks, -1)))
  return jnp.dot(grad, kernel.T), kernel_grad.astype(kernel.dtype)


_pointwise.defvjp(_pointwise_forward, _pointwise_backward)


def _lax_conv(x: jnp.ndarray, kernel: jnp.ndarray, strides: tuple[int, int]) -> jnp.ndarray:
  kh, kw = kernel.shape[:2]
  return jax.lax.conv_general_dilated(
      x, kernel, strides, ((kh // 2, kh // 2), (kw // 2, kw // 2)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _cpu_conv(x: jnp.ndarray, kernel: jnp.ndarray, strides: tuple[int, int]) -> jnp.ndarray:
  return _lax_conv(x, kernel, strides)


def _cpu_conv_forward(x, kernel, strides):
  return _lax_conv(x, kernel, strides), (x, kernel)


def _cpu_conv_backward(strides, residuals, grad):
  x, kernel = residuals
  _, input_vjp = jax.vjp(lambda x: _lax_conv(x, kernel, strides), x)
  return input_vjp(grad)[0], _conv_kernel_grad(x, grad, kernel, strides)


# One matrix product per kernel tap runs faster on XLA:CPU than its backward-filter
# convolution in chunks of 4096 positions (benchmarks/results/cpu_notes.md).
def _conv_kernel_grad(x, grad, kernel, strides):
  """The kernel gradient ``[kh, kw, Cin, Cout]`` of ``_lax_conv(x, kernel, strides)``
  for ``grad`` ``[B, H', W', Cout]``: per tap, the tap's windows of ``x``
  ``[B*H'*W', Cin]`` transposed times ``grad`` ``[B*H'*W', Cout]``."""
  kh, kw, cin, cout = kernel.shape
  # Without the barrier XLA:CPU fuses the producers of ``grad`` (batch norm's
  # backward, ...) into each tap's product and recomputes them there.
  x, grad = jax.lax.optimization_barrier((x, grad))
  grad_rows = grad.reshape(-1, cout)
  products = [jax.lax.dot_general(window.reshape(-1, cin), grad_rows, (((0,), (0,)), ((), ())),
                                  preferred_element_type=jnp.float32)
              for window in _tap_windows(x, kh, kw, strides)]
  return jnp.stack(products).reshape(kernel.shape).astype(kernel.dtype)


_cpu_conv.defvjp(_cpu_conv_forward, _cpu_conv_backward)


def depthwise_conv2d(x: jnp.ndarray, kernel: jnp.ndarray, stride: int = 1) -> jnp.ndarray:
  """Depthwise conv of ``x`` ``[B, H, W, C]`` with ``kernel`` ``[k, k, 1, C]``
  (``feature_group_count = C``), zero padding ``k // 2`` -> ``[B, H', W', C]``."""
  kh, kw = kernel.shape[:2]
  if jax.default_backend() != "cpu":
    return jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), ((kh // 2, kh // 2), (kw // 2, kw // 2)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=x.shape[-1])
  if stride == 1:
    return _cpu_depthwise(x, kernel)
  return _shifted_depthwise(x, kernel, stride)


def _shifted_depthwise(x, kernel, stride):
  kh, kw = kernel.shape[:2]
  taps = kernel.reshape(kh * kw, -1)
  return _sum([window * tap for window, tap in
               zip(_tap_windows(x, kh, kw, (stride, stride)), taps)])


# Stride 1 (odd kernels): the input gradient is the same shifted sum with the
# kernel flipped, and the kernel gradient ``k * k`` sums of window * gradient.
@jax.custom_vjp
def _cpu_depthwise(x, kernel):
  return _shifted_depthwise(x, kernel, 1)


def _cpu_depthwise_forward(x, kernel):
  return _shifted_depthwise(x, kernel, 1), (x, kernel)


def _cpu_depthwise_backward(residuals, grad):
  x, kernel = residuals
  kh, kw = kernel.shape[:2]
  # Without the barrier XLA:CPU fuses the gradient's producers (batch norm's
  # backward, ...) into the shifted sums and recomputes them for every tap.
  x, grad = jax.lax.optimization_barrier((x, grad))
  grad_x = _shifted_depthwise(grad, kernel[::-1, ::-1], 1)
  products = [window * grad for window in _tap_windows(x, kh, kw, (1, 1))]
  return grad_x, jnp.stack(_sums(products, (0, 1, 2))).reshape(kernel.shape)


def _sums(arrays: list[jnp.ndarray], axes: tuple[int, ...]) -> tuple[jnp.ndarray, ...]:
  """``jnp.sum(a, axes)`` for each array of ``arrays`` (same shape) as ONE
  variadic reduction: XLA:CPU then reads the inputs in one pass and fuses the
  slices that make them, where separate sums each copy their slice first (3-4x
  faster for the ``k * k`` taps of a depthwise kernel gradient)."""
  zeros = tuple(jnp.zeros((), a.dtype) for a in arrays)
  return jax.lax.reduce(tuple(arrays), zeros,
                        lambda left, right: tuple(l + r for l, r in zip(left, right)), axes)


_cpu_depthwise.defvjp(_cpu_depthwise_forward, _cpu_depthwise_backward)


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


def batch_norm_train(x: jnp.ndarray, scale: jnp.ndarray, bias: jnp.ndarray, epsilon: float,
                     axis_name: str | None = None
                     ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  """Training-mode batch norm of ``x`` ``[..., C]`` over all axes but the last,
  as ``flax.linen.BatchNorm`` computes it (float32 statistics, ``E[x^2] - E[x]^2``
  variance clipped at 0, means averaged over ``axis_name`` when given).

  Returns ``(y, mean, var)``: ``y`` in ``x``'s dtype, the batch ``mean`` and
  ``var`` ``[C]`` for the running averages.
  """
  return _batch_norm(x, scale, bias, epsilon, axis_name)


def _batch_norm_stats(x, epsilon, axis_name):
  axes = tuple(range(x.ndim - 1))
  x = x.astype(jnp.float32)
  mean, mean_sq = jnp.mean(x, axes), jnp.mean(jnp.square(x), axes)
  if axis_name is not None:
    mean, mean_sq = jax.lax.pmean(jnp.stack([mean, mean_sq]), axis_name)
  var_unclipped = mean_sq - jnp.square(mean)
  var = jnp.maximum(0.0, var_unclipped)
  return x, mean, var, var_unclipped, jax.lax.rsqrt(var + epsilon)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _batch_norm(x, scale, bias, epsilon, axis_name):
  return _batch_norm_forward(x, scale, bias, epsilon, axis_name)[0]


def _batch_norm_forward(x, scale, bias, epsilon, axis_name):
  x32, mean, var, var_unclipped, inv = _batch_norm_stats(x, epsilon, axis_name)
  y = ((x32 - mean) * (inv * scale) + bias).astype(x.dtype)
  return (y, mean, var), (x, scale, mean, var_unclipped, inv)


def _batch_norm_backward(epsilon, axis_name, residuals, cotangents):
  # The reverse pass of ``_batch_norm_forward``, written as two passes over x:
  # one pair of per-channel sums, then one element-wise expression.
  del epsilon
  x, scale, mean, var_unclipped, inv = residuals
  grad_y, grad_mean, grad_var = cotangents
  axes = tuple(range(x.ndim - 1))
  count = x.size // x.shape[-1]
  x32, grad_y = x.astype(jnp.float32), grad_y.astype(jnp.float32)
  sum_grad = jnp.sum(grad_y, axes)
  sum_grad_centered = jnp.sum(grad_y * (x32 - mean), axes)
  multiplier = inv * scale
  grad_inv = sum_grad_centered * scale
  grad_var = grad_var + grad_inv * -0.5 * inv ** 3
  grad_var = jnp.where(var_unclipped > 0, grad_var, 0.0)
  grad_mean = grad_mean - sum_grad * multiplier - 2.0 * mean * grad_var
  grad_mean_sq = grad_var
  if axis_name is not None:
    grad_mean, grad_mean_sq = jax.lax.pmean(jnp.stack([grad_mean, grad_mean_sq]), axis_name)
  grad_x = grad_y * multiplier + (grad_mean + 2.0 * grad_mean_sq * x32) / count
  return grad_x.astype(x.dtype), sum_grad_centered * inv, sum_grad


_batch_norm.defvjp(_batch_norm_forward, _batch_norm_backward)


def avg_pool(x: jnp.ndarray, size: int, stride: int, padding: tuple[int, int, int, int],
             count_include_pad: bool = True) -> jnp.ndarray:
  """Average pool of ``x`` ``[B, H, W, C]`` over ``size x size`` windows with
  ``stride`` after zero padding (top, bottom, left, right); the mean is over the
  whole window or, without ``count_include_pad``, over its unpadded part."""
  top, bottom, left, right = padding
  pads = ((top, bottom), (left, right))
  padded = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  rows = _sum(_shifted_windows(padded, 1, size, stride))
  total = _sum(_shifted_windows(rows, 2, size, stride))
  if count_include_pad:
    return total / (size * size)
  ones = np.pad(np.ones(x.shape[1:3], np.float32), pads)[None, :, :, None]
  counts = _sum(_shifted_windows(_sum(_shifted_windows(ones, 1, size, stride)), 2, size, stride))
  return total / jnp.asarray(counts, x.dtype)


def _sum(arrays: list) -> jnp.ndarray:
  out = arrays[0]
  for array in arrays[1:]:
    out = out + array
  return out
