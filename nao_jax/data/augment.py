"""On-device CIFAR augmentation (reference §7.1), run inside the jitted train step.

Per example: zero-pad by ``pad`` and crop back at a random offset, flip
horizontally with probability 1/2, normalise per channel, then Cutout: zero a
``cutout`` x ``cutout`` square centred at a uniformly random pixel, clipped at
the borders. Each example's randomness comes from its own key
(``fold_in(step_key, global_example_index)``), so a step gives the same result
on any number of devices.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp


class AugmentParams(NamedTuple):
  """The random draws of one example (int32 scalars; ``flip`` is bool)."""
  crop_y: jnp.ndarray  # Row offset in the padded image, in [0, 2 * pad].
  crop_x: jnp.ndarray
  flip: jnp.ndarray
  cutout_y: jnp.ndarray  # Centre of the Cutout square, in [0, H).
  cutout_x: jnp.ndarray


def draw_params(key: jax.Array, height: int, width: int, pad: int) -> AugmentParams:
  """Draws one example's augmentation parameters from ``key``."""
  keys = jax.random.split(key, 5)
  return AugmentParams(
      crop_y=jax.random.randint(keys[0], (), 0, 2 * pad + 1),
      crop_x=jax.random.randint(keys[1], (), 0, 2 * pad + 1),
      flip=jax.random.bernoulli(keys[2]),
      cutout_y=jax.random.randint(keys[3], (), 0, height),
      cutout_x=jax.random.randint(keys[4], (), 0, width))


def normalize(images: jnp.ndarray, mean: Sequence[float], std: Sequence[float]) -> jnp.ndarray:
  """uint8 ``[..., H, W, C]`` -> float32 ``(x / 255 - mean) / std``."""
  x = images.astype(jnp.float32) / 255.0
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def augment_image(image: jnp.ndarray, params: AugmentParams, mean: Sequence[float],
                  std: Sequence[float], pad: int = 4, cutout: int = 16,
                  flip: bool = True) -> jnp.ndarray:
  """Augments one uint8 image ``[H, W, C]`` -> float32 ``[H, W, C]``.

  ``pad = 0`` disables the crop, ``flip = False`` the flip, ``cutout = 0`` Cutout.
  """
  height, width, channels = image.shape
  if pad:
    padded = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    image = jax.lax.dynamic_slice(padded, (params.crop_y, params.crop_x, 0),
                                  (height, width, channels))
  if flip:
    image = jnp.where(params.flip, image[:, ::-1, :], image)
  x = normalize(image, mean, std)
  if cutout:
    rows = jnp.arange(height)[:, None]
    cols = jnp.arange(width)[None, :]
    half = cutout // 2
    inside = ((rows >= params.cutout_y - half) & (rows < params.cutout_y + half)
              & (cols >= params.cutout_x - half) & (cols < params.cutout_x + half))
    x = jnp.where(inside[:, :, None], 0.0, x)
  return x


def augment_batch(images: jnp.ndarray, keys: jax.Array, mean: Sequence[float],
                  std: Sequence[float], pad: int = 4, cutout: int = 16,
                  flip: bool = True) -> jnp.ndarray:
  """uint8 ``[B, H, W, C]`` and one key per example ``[B]`` -> float32 ``[B, H, W, C]``."""
  _, height, width, _ = images.shape

  def one(image, key):
    return augment_image(image, draw_params(key, height, width, pad), mean, std, pad,
                         cutout, flip)

  return jax.vmap(one)(images, keys)
