"""Child networks: parameter counts of the reference, op semantics vs numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nao_jax import models
from nao_jax.models import ops
from nao_jax.spaces import known


@pytest.mark.parametrize("name, main, aux", [
    ("NAONet-A", 11_470_150, 476_426),  # Reference §7.1 / §10 (PyTorch, F=36, N=6).
    ("NAONet-B", 2_921_302, 457_994),
])
def test_parameter_counts_equal_the_reference(name, main, aux):
  model = models.from_space(*known.get(name), num_cells=6, features=36)
  variables = models.abstract_variables(model)
  assert models.count_params(variables["params"]) == (main, aux)


def numpy_pool(x, kind, size, stride, include_pad):
  """PyTorch pooling semantics on one [H, W] map, written with loops."""
  h, w = x.shape
  if size == 2:
    x = np.pad(x, ((0, 1), (0, 1)))  # Explicit zeros, then no padding.
    pad = 0
  else:
    pad = size // 2
  fill = -np.inf if kind == "max" else 0.0
  padded = np.pad(x, pad, constant_values=fill)
  valid = np.pad(np.ones_like(x), pad)
  out_h = (padded.shape[0] - size) // stride + 1
  out = np.zeros((out_h, out_h))
  for i in range(out_h):
    for j in range(out_h):
      window = padded[i * stride:i * stride + size, j * stride:j * stride + size]
      if kind == "max":
        out[i, j] = window.max()
      else:
        count = size * size if include_pad else valid[i * stride:i * stride + size,
                                                      j * stride:j * stride + size].sum()
        out[i, j] = window.sum() / count
  return out


@pytest.mark.parametrize("op_set", ["nao11", "ws5"])
@pytest.mark.parametrize("name", ["max_pool_2x2", "max_pool_3x3", "max_pool_5x5", "avg_pool_2x2",
                                  "avg_pool_3x3", "avg_pool_5x5"])
@pytest.mark.parametrize("stride", [1, 2])
def test_pools_match_pytorch_padding_rules(op_set, name, stride):
  x = np.random.default_rng(0).normal(size=(1, 8, 8, 1)).astype(np.float32) - 0.5
  op = ops.make_op(name, 1, stride, op_set)
  got = np.asarray(op.apply({}, jnp.asarray(x), False))[0, :, :, 0]
  kind, size = name.split("_")[0], int(name[-1])
  expected = numpy_pool(x[0, :, :, 0], kind, size, stride, include_pad=op_set == "nao11")
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_factorized_reduce_reads_even_and_odd_pixels():
  x = jnp.arange(2 * 4 * 4 * 2, dtype=jnp.float32).reshape(2, 4, 4, 2)
  module = ops.FactorizedReduce(4)
  variables = module.init(jax.random.key(0), x, False)
  kernels = [variables["params"][f"conv_{i}"]["kernel"] for i in (1, 2)]
  out = module.apply(variables, x, False)  # BN in eval mode with fresh stats: / sqrt(1 + eps).
  scale = 1 / np.sqrt(1 + 1e-5)
  even = np.einsum("bhwc,cd->bhwd", np.asarray(x)[:, 0::2, 0::2], kernels[0][0, 0]) * scale
  odd = np.einsum("bhwc,cd->bhwd", np.asarray(x)[:, 1::2, 1::2], kernels[1][0, 0]) * scale
  np.testing.assert_allclose(out, np.concatenate([even, odd], -1), rtol=1e-5, atol=1e-5)


def test_factorized_conv_is_1x3_then_3x1_with_strides():
  module = ops.make_op("conv_1x3_3x1", 6, 2, "nao11")
  x = jnp.ones((1, 8, 8, 6))
  variables = module.init(jax.random.key(0), x, False)
  params = variables["params"]
  assert params["row"]["conv"]["kernel"].shape == (1, 3, 6, 6)
  assert params["column"]["conv"]["kernel"].shape == (3, 1, 6, 6)
  assert module.apply(variables, x, False).shape == (1, 4, 4, 6)


def test_kaiming_normal_kernels_and_network_output_shapes():
  space, arch = known.get("NAONet-B")
  model = models.from_space(space, arch, num_cells=1, features=8, num_classes=7)
  x = jnp.zeros((2, 32, 32, 3))
  variables = model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, x,
                         train=True)
  logits, aux = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)},
                            mutable=["batch_stats"])[0]
  assert logits.shape == aux.shape == (2, 7)
  logits, aux = model.apply(variables, x, train=False)
  assert logits.shape == (2, 7) and aux is None
  kernel = np.asarray(variables["params"]["cell_0"]["calibrate_s0"]["conv"]["kernel"])
  fan_in = kernel.shape[0] * kernel.shape[1] * kernel.shape[2]
  assert kernel.std() == pytest.approx(np.sqrt(2 / fan_in), rel=0.15)
  assert np.abs(kernel).max() > 2 * np.sqrt(2 / fan_in)  # Not truncated at 2 sigma.


def test_auxiliary_head_on_too_small_images_names_the_fix():
  model = models.from_space(*known.get("NAONet-B"), num_cells=1, features=4)
  with pytest.raises(ValueError, match=r"2x2 here .*model.auxiliary=False"):
    models.abstract_variables(model, image_size=8)
  no_aux = models.from_space(*known.get("NAONet-B"), num_cells=1, features=4, auxiliary=False)
  assert models.count_params(models.abstract_variables(no_aux, 8)["params"])[1] == 0


def test_unknown_op_and_wrong_space_raise_clear_errors():
  with pytest.raises(ValueError, match="unknown op 'conv_9x9'"):
    ops.make_op("conv_9x9", 4, 1, "nao11")
  with pytest.raises(ValueError, match="nasnet"):
    models.from_space(*known.get("NAO-PTB"))
