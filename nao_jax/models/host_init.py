"""Initial variables of the child networks and the supernet, drawn on the host.

Compiling a flax ``init`` means tracing and compiling the whole forward pass:
seconds to minutes on a CPU, paid again by every child training. The initializers of these
networks are simple, so ``draw`` produces them with numpy from the shapes
``jax.eval_shape`` gives in under a second:

* a leaf whose name has the word ``scale`` (``scale``, ``sep3_scale_0``) is
  ones, ``bias`` zeros; BatchNorm statistics ``mean`` zeros and ``var`` ones;
* every other leaf is a kernel, Kaiming normal (fan in, gain sqrt 2, not
  truncated: ``torch.nn.init.kaiming_normal_``, reference §7.1). Its fan in is
  ``prod(shape[:-1])`` (``[..., in, out]``: HWIO convs, dense layers) or, for a
  kernel stacked on a leading copy axis (odd rank: ``[copies, in, out]`` or
  ``[copies, kh, kw, in, out]``, the supernet's shared weights), ``prod(shape[1:-1])``.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

ONES, ZEROS = ("scale", "var"), ("bias", "mean")


def _leaf_name(path: tuple[Any, ...]) -> str:
  return str(getattr(path[-1], "key", path[-1]))


def _matches(name: str, names: tuple[str, ...]) -> bool:
  """Whether one of the ``_``-separated words of ``name`` is in ``names``."""
  return not set(name.split("_")).isdisjoint(names)


def kernel_fan_in(shape: tuple[int, ...]) -> int:
  """The fan in of a kernel ``[..., in, out]`` (odd rank: stacked on axis 0)."""
  return int(np.prod(shape[1:-1] if len(shape) % 2 else shape[:-1]))


def draw(shapes: Any, rng: np.random.Generator) -> Any:
  """Float32 ``jax.Array``s for the ``jax.ShapeDtypeStruct`` leaves of ``shapes``
  (a params or batch-stats pytree), in its flattening order from ``rng``.

  Raises ``ValueError`` for a leaf of rank < 2 whose name says neither ones nor
  zeros (a variable these rules do not know)."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
  values = []
  for path, leaf in leaves:
    name = _leaf_name(path)
    if _matches(name, ONES):
      values.append(np.ones(leaf.shape, np.float32))
    elif _matches(name, ZEROS):
      values.append(np.zeros(leaf.shape, np.float32))
    elif len(leaf.shape) >= 2:
      std = np.sqrt(2.0 / kernel_fan_in(leaf.shape))
      values.append((rng.standard_normal(leaf.shape) * std).astype(np.float32))
    else:
      raise ValueError(f"no initializer for variable {jax.tree_util.keystr(path)} of shape "
                       f"{leaf.shape}: name it with the word scale or bias, or give it "
                       "rank >= 2 (a kernel).")
  return jax.tree_util.tree_unflatten(treedef, jax.device_put(values))


def rng_from_key(key: jax.Array) -> np.random.Generator:
  """A numpy generator seeded by the bits of a JAX PRNG ``key``."""
  return np.random.default_rng(np.asarray(jax.random.key_data(key)).reshape(-1).tolist())
