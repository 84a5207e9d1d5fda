"""Data: augmentation vs numpy, digits, CIFAR through tfds mock data, missing data."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from nao_jax import data
from nao_jax.data import augment

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def data_config(name, **overrides):
  config = dict(name=name, data_dir="", download=False, split="search", valid_size=200,
                split_seed=0)
  return ml_collections.ConfigDict({**config, **overrides})


def numpy_augment(image, p, pad=4, cutout=16, flip=True):
  """Reference order: pad + crop, flip, normalise, Cutout (clipped at the borders)."""
  h, w, _ = image.shape
  x = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))[p.crop_y:p.crop_y + h, p.crop_x:p.crop_x + w]
  if flip and p.flip:
    x = x[:, ::-1]
  x = (x.astype(np.float32) / 255 - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
  if cutout:
    y1, y2 = np.clip([p.cutout_y - cutout // 2, p.cutout_y + cutout // 2], 0, h)
    x1, x2 = np.clip([p.cutout_x - cutout // 2, p.cutout_x + cutout // 2], 0, w)
    x[y1:y2, x1:x2] = 0
  return x


@pytest.mark.parametrize("pad, cutout, flip", [(4, 16, True), (0, 0, True), (4, 0, False),
                                               (0, 16, False)])
def test_each_augmentation_matches_numpy(pad, cutout, flip):
  images = np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
  keys = jax.random.split(jax.random.key(3), 24)
  got = np.asarray(augment.augment_batch(jnp.asarray(images), keys, MEAN, STD, pad, cutout, flip))
  draws = [jax.tree.map(int, augment.draw_params(k, 32, 32, pad)) for k in keys]
  for image, draw, out in zip(images, draws, got):
    np.testing.assert_allclose(out, numpy_augment(image, draw, pad, cutout, flip), atol=1e-6)
  # The draws cover their ranges: crops in [0, 2 * pad], both flips, cutout near borders.
  assert {d.crop_y for d in draws} <= set(range(2 * pad + 1))
  assert {bool(d.flip) for d in draws} == {False, True}


def test_digits_are_real_32x32x3_with_a_seeded_split():
  search = data.load(data_config("digits"))
  assert (len(search.train), len(search.valid), len(search.test)) == (1300, 200, 297)
  assert search.train.images.shape[1:] == (32, 32, 3) and search.train.images.dtype == np.uint8
  assert set(np.unique(search.test.labels)) == set(range(10))
  # 4x4 pixel blocks, equal channels.
  block = search.train.images[0, :4, :4, 0]
  assert (block == block[0, 0]).all() and (search.train.images[..., 0] == search.train.images[..., 2]).all()
  again = data.load(data_config("digits"))
  np.testing.assert_array_equal(again.valid.labels, search.valid.labels)
  other = data.load(data_config("digits", split_seed=1))
  assert not np.array_equal(other.valid.images, search.valid.images)
  full = data.load(data_config("digits", split="full"))
  assert full.valid is None and len(full.train) == 1500
  np.testing.assert_array_equal(full.test.images, search.test.images)


@pytest.mark.parametrize("size", [8, 16])
def test_digits_at_smaller_sizes_are_the_same_images(size):
  large = data.load(data_config("digits"))
  small = data.load(data_config("digits", image_size=size))
  factor = 32 // size
  for a, b in ((large.train, small.train), (large.valid, small.valid), (large.test, small.test)):
    assert b.images.shape[1:] == (size, size, 3)
    np.testing.assert_array_equal(a.images[:, ::factor, ::factor], b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
  assert small.mean == large.mean


def test_image_size_other_than_the_dataset_s_is_an_error():
  with pytest.raises(ValueError, match=r"image_size: digits come in sizes \(8, 16, 32\)"):
    data.load(data_config("digits", image_size=12))
  with pytest.raises(ValueError, match="image_size: cifar10 images are 32x32"):
    data.load(data_config("cifar10", image_size=16))


@pytest.mark.parametrize("name, classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_through_tfds_mock_data(name, classes):
  with tfds.testing.mock_data(num_examples=120):
    search = data.load(data_config(name, valid_size=20))
    full = data.load(data_config(name, split="full"))
  assert (len(search.train), len(search.valid), len(search.test)) == (100, 20, 120)
  assert search.num_classes == classes and full.valid is None and len(full.train) == 120
  assert search.train.images.dtype == np.uint8 and search.train.images.shape[1:] == (32, 32, 3)
  assert search.train.labels.max() < classes


def test_missing_data_without_network_gives_one_clear_error(tmp_path):
  with pytest.raises(ValueError, match=r"data_dir: cifar10 is not prepared in .*tfds build cifar10"):
    data.load(data_config("cifar10", data_dir=str(tmp_path)))


def test_bad_split_settings_name_the_field():
  with pytest.raises(ValueError, match="valid_size"):
    data.load(data_config("digits", valid_size=5000))
  with pytest.raises(ValueError, match="split"):
    data.load(data_config("digits", split="half"))
  with pytest.raises(ValueError, match="unknown dataset"):
    data.load(data_config("mnist"))
