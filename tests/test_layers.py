"""The fast conv, max-pool and batch-norm primitives equal XLA's generic ops, values and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nao_jax.models import layers


def _reference_conv(x, kernel, strides, groups=1):
  kh, kw = kernel.shape[:2]
  return jax.lax.conv_general_dilated(
      x, kernel, strides, ((kh // 2, kh // 2), (kw // 2, kw // 2)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


def _assert_same_values_and_vjp(fast, reference, *args):
  out, fast_vjp = jax.vjp(fast, *args)
  expected, reference_vjp = jax.vjp(reference, *args)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
  cotangent = jnp.asarray(np.random.default_rng(1).normal(size=out.shape), out.dtype)
  for got, want in zip(fast_vjp(cotangent), reference_vjp(cotangent), strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel_size", [(1, 1), (3, 3), (1, 7), (7, 1), (5, 5)])
@pytest.mark.parametrize("strides", [(1, 1), (2, 2), (1, 2), (2, 1)])
def test_conv2d_equals_lax_convolution(kernel_size, strides):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 9, 8, 3)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(*kernel_size, 3, 4)), jnp.float32)
  _assert_same_values_and_vjp(lambda x, k: layers.conv2d(x, k, strides),
                              lambda x, k: _reference_conv(x, k, strides), x, kernel)


@pytest.mark.parametrize("shape", [(3, 5, 7, 4), (1, 1, 1, 4)])
def test_pointwise_conv_with_odd_row_count_equals_lax(shape):
  # An odd number of positions: the kernel gradient is one chunk instead of two.
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=shape), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(1, 1, 4, 6)), jnp.float32)
  _assert_same_values_and_vjp(lambda x, k: layers.conv2d(x, k),
                              lambda x, k: _reference_conv(x, k, (1, 1)), x, kernel)


@pytest.mark.parametrize("size", [3, 5, 7])
@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_conv2d_equals_grouped_lax_convolution(size, stride):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 9, 8, 5)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(size, size, 1, 5)), jnp.float32)
  _assert_same_values_and_vjp(
      lambda x, k: layers.depthwise_conv2d(x, k, stride),
      lambda x, k: _reference_conv(x, k, (stride, stride), groups=5), x, kernel)


@pytest.mark.parametrize("size,padding,pad_value", [
    (2, (0, 1, 0, 1), 0.0), (3, (1, 1, 1, 1), -np.inf), (5, (2, 2, 2, 2), -np.inf)])
@pytest.mark.parametrize("stride", [1, 2])
def test_max_pool_equals_reduce_window(size, padding, pad_value, stride):
  # Distinct values (a permutation), so no two inputs tie for a maximum.
  x = jnp.asarray(np.random.default_rng(0).permutation(2 * 9 * 8 * 3).reshape(2, 9, 8, 3)
                  - 200.5, jnp.float32)

  def reference(x):
    top, bottom, left, right = padding
    padded = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)),
                     constant_values=pad_value)
    return jax.lax.reduce_window(padded, -jnp.inf, jax.lax.max, (1, size, size, 1),
                                 (1, stride, stride, 1), "VALID")

  _assert_same_values_and_vjp(lambda x: layers.max_pool(x, size, stride, padding, pad_value),
                              reference, x)


@pytest.mark.parametrize("kernel_size,strides", [((3, 3), (1, 1)), ((1, 7), (1, 1)),
                                                 ((3, 3), (2, 2))])
def test_conv2d_kernel_gradient_on_large_maps_equals_lax(kernel_size, strides):
  # 5 images of 48x48: the CPU kernel gradient's per-tap products contract over
  # 11,520 (stride 1) or 2,880 (stride 2) positions; both gradients equal lax's.
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(5, 48, 48, 3)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(*kernel_size, 3, 4)), jnp.float32)
  _assert_same_values_and_vjp(lambda x, k: layers.conv2d(x, k, strides),
                              lambda x, k: _reference_conv(x, k, strides), x, kernel)


@pytest.mark.parametrize("devices", [1, 2])
def test_batch_norm_train_equals_flax_batch_norm(devices):
  # With 2 devices (a vmap with an axis name) the statistics are averaged over both.
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(devices, 4, 5, 3, 6)) * 2 + 1, jnp.float32)
  scale = jnp.asarray(rng.normal(size=6), jnp.float32)
  bias = jnp.asarray(rng.normal(size=6), jnp.float32)
  axis_name = "batch" if devices > 1 else None
  flax_norm = nn.BatchNorm(use_running_average=False, momentum=0.0, epsilon=1e-5,
                           axis_name=axis_name)

  def reference(x, scale, bias):
    y, stats = flax_norm.apply({"params": {"scale": scale, "bias": bias},
                                "batch_stats": {"mean": jnp.zeros(6), "var": jnp.ones(6)}},
                               x, mutable=["batch_stats"])
    # With momentum 0 the running averages are the batch statistics.
    return y, stats["batch_stats"]["mean"], stats["batch_stats"]["var"]

  def fast(x, scale, bias):
    return layers.batch_norm_train(x, scale, bias, 1e-5, axis_name)

  cotangents = (jnp.asarray(rng.normal(size=x.shape), jnp.float32),
                jnp.asarray(rng.normal(size=(devices, 6)), jnp.float32),
                jnp.asarray(rng.normal(size=(devices, 6)), jnp.float32))

  def values_and_grads(function):
    # Per device, as in a pmapped train step: the VJP runs inside the mapped axis.
    def one(x, cotangent):
      outs, vjp = jax.vjp(function, x, scale, bias)
      return outs, vjp(cotangent)
    return jax.vmap(one, axis_name="batch")(x, cotangents)

  got, want = values_and_grads(fast), values_and_grads(reference)
  for got_leaf, want_leaf in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(got_leaf, want_leaf, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size,padding", [(2, (0, 0, 0, 0)), (3, (1, 1, 1, 1)),
                                          (5, (2, 2, 2, 2))])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_equals_flax_avg_pool(size, padding, stride, count_include_pad):
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 9, 8, 3)), jnp.float32)
  pads = ((padding[0], padding[1]), (padding[2], padding[3]))
  _assert_same_values_and_vjp(
      lambda x: layers.avg_pool(x, size, stride, padding, count_include_pad),
      lambda x: nn.avg_pool(x, (size, size), (stride, stride), pads,
                            count_include_pad=count_include_pad), x)
