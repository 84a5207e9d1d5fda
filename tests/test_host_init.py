"""Initial variables drawn on the host: the flax init's tree, the reference's distributions."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nao_jax import models
from nao_jax.models import host_init
from nao_jax.spaces import known
from nao_jax.training import step as step_lib


def test_train_state_has_the_flax_init_tree_and_the_reference_distributions():
  space, arch = known.get("NAONet-B")
  model = models.from_space(space, arch, num_cells=1, features=8, num_classes=7)
  tx = optax.sgd(0.1, momentum=0.9)
  state = step_lib.create_train_state(model, tx, jax.random.key(0))
  flax_variables = jax.eval_shape(lambda: model.init(
      {"params": jax.random.key(0), "dropout": jax.random.key(1)}, jnp.zeros((2, 32, 32, 3)),
      train=True))
  for ours, theirs in ((state.params, flax_variables["params"]),
                       (state.batch_stats, flax_variables["batch_stats"])):
    assert (jax.tree.map(lambda a: (a.shape, a.dtype), ours)
            == jax.tree.map(lambda a: (a.shape, a.dtype), theirs))

  flat = {jax.tree_util.keystr(p): np.asarray(v)
          for p, v in jax.tree_util.tree_flatten_with_path(state.params)[0]}
  kernels = [v for k, v in flat.items() if k.endswith("['kernel']")]
  assert len(kernels) > 20
  for kernel in kernels:
    if kernel.size >= 500:  # Enough values for a 15% estimate of the std.
      fan_in = np.prod(kernel.shape[:-1])
      assert kernel.std() == pytest.approx(np.sqrt(2 / fan_in), rel=0.15)
  big = max(kernels, key=np.size)
  assert np.abs(big).max() > 2.5 * np.sqrt(2 / np.prod(big.shape[:-1]))  # Not truncated.
  assert all(np.all(v == 1) for k, v in flat.items() if k.endswith("['scale']"))
  assert all(np.all(v == 0) for k, v in flat.items() if k.endswith("['bias']"))
  stats = jax.tree_util.tree_flatten_with_path(state.batch_stats)[0]
  assert {p[-1].key for p, _ in stats} == {"mean", "var"}
  for path, value in stats:
    assert np.all(np.asarray(value) == (1 if path[-1].key == "var" else 0))
  assert all(np.all(np.asarray(m) == 0) for m in jax.tree.leaves(state.opt_state))

  again = step_lib.create_train_state(model, tx, jax.random.key(0))
  other = step_lib.create_train_state(model, tx, jax.random.key(1))
  for a, b, c in zip(jax.tree.leaves(state.params), jax.tree.leaves(again.params),
                     jax.tree.leaves(other.params)):
    np.testing.assert_array_equal(a, b)
    assert a.ndim < 2 or not np.array_equal(a, c)


def test_stacked_kernels_count_their_fan_in_without_the_copy_axis():
  shapes = {"plain": jax.ShapeDtypeStruct((3, 3, 40, 64), jnp.float32),
            "stacked": jax.ShapeDtypeStruct((6, 3, 3, 40, 64), jnp.float32),
            "sep3_scale_0": jax.ShapeDtypeStruct((6, 64), jnp.float32),
            "output_bias": jax.ShapeDtypeStruct((64,), jnp.float32)}
  values = host_init.draw(shapes, np.random.default_rng(0))
  for name in ("plain", "stacked"):
    assert np.asarray(values[name]).std() == pytest.approx(np.sqrt(2 / 360), rel=0.05)
  assert np.all(np.asarray(values["sep3_scale_0"]) == 1)
  assert np.all(np.asarray(values["output_bias"]) == 0)


def test_a_variable_without_a_known_initializer_is_an_error():
  with pytest.raises(ValueError, match=r"\['gamma'\].*scale or bias"):
    host_init.draw({"gamma": jax.ShapeDtypeStruct((8,), jnp.float32)},
                   np.random.default_rng(0))
