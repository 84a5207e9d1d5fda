"""The per-device train and eval steps of child training, written once with
``axis_name='batch'`` collectives and wrapped in ``jax.pmap`` by ``pmapped_steps``.

Randomness: the step key is ``fold_in(key, step)``; example ``i`` of the global
batch augments with ``fold_in(augment_key, i)``, so augmentation does not depend
on the device count; dropout and drop path use ``fold_in(dropout_key, device)``.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from nao_jax.data import augment
from nao_jax.models import NasnetNetwork
from nao_jax.models import abstract_variables
from nao_jax.models import host_init

AXIS = "batch"


class TrainState(flax.struct.PyTreeNode):
  """Everything a train step changes."""
  step: jnp.ndarray  # int32 scalar, the number of steps done.
  params: Any
  batch_stats: Any
  opt_state: Any


class Hyper(NamedTuple):
  """Static settings of the train step.

  Attributes:
    mean, std: per-channel normalisation.
    pad, cutout, flip: augmentation (0 / False disables).
    learning_rate: the base of the cosine learning rate.
    aux_weight: weight of the auxiliary head's loss.
    label_smoothing: 0 disables.
  """
  mean: tuple[float, ...]
  std: tuple[float, ...]
  pad: int = 4
  cutout: int = 16
  flip: bool = True
  learning_rate: float = 0.025
  aux_weight: float = 0.4
  label_smoothing: float = 0.0


class Length(NamedTuple):
  """The length of a run; the train step receives it as int32 scalars, not as
  constants, so runs that differ only in length (the re-ranking and the final
  training of one arch, a resume with more epochs) share one compiled step."""
  epochs: Any
  steps_per_epoch: Any

  @property
  def total_steps(self) -> Any:
    return self.epochs * self.steps_per_epoch


def cosine_learning_rate(base: float, step: Any, length: Length,
                         minimum: float = 0.0) -> jnp.ndarray:
  """The reference's ``CosineAnnealingLR`` from ``base`` to ``minimum``, stepped per
  epoch: ``minimum + (base - minimum) * (1 + cos(pi * epoch / epochs)) / 2`` at
  (0-based) ``step``; float32."""
  epoch = jnp.floor_divide(step, length.steps_per_epoch).astype(jnp.float32)
  cosine = jnp.cos(math.pi * epoch / jnp.asarray(length.epochs, jnp.float32))
  return minimum + 0.5 * (base - minimum) * (1.0 + cosine)


@functools.lru_cache(maxsize=None)
def make_optimizer(momentum: float = 0.9, weight_decay: float = 3e-4,
                   clip_norm: float = 5.0) -> optax.GradientTransformation:
  """The reference's optimiser up to its learning rate: clip the gradient's global
  norm, add weight decay (all parameters, as PyTorch's SGD), momentum. The train
  steps multiply its updates by ``-learning_rate`` of their schedule
  (``apply_sgd``), which equals PyTorch's SGD with that rate. Cached: equal
  settings give the same object, so ``pmapped_steps`` recognises them."""
  return optax.chain(optax.clip_by_global_norm(clip_norm),
                     optax.add_decayed_weights(weight_decay),
                     optax.trace(decay=momentum))


def apply_sgd(tx: optax.GradientTransformation, grads: Any, opt_state: Any, params: Any,
              learning_rate: jnp.ndarray) -> tuple[Any, Any, Any]:
  """One step of ``make_optimizer``'s ``tx`` at ``learning_rate``:
  ``(new params, new opt_state, updates)``."""
  directions, opt_state = tx.update(grads, opt_state, params)
  updates = jax.tree.map(lambda d: -learning_rate.astype(d.dtype) * d, directions)
  return optax.apply_updates(params, updates), opt_state, updates


def create_train_state(model: NasnetNetwork, tx: optax.GradientTransformation, key: jax.Array,
                       image_size: int = 32) -> TrainState:
  """Initialises parameters (Kaiming normal kernels, BN scales ones and biases
  zeros), BatchNorm statistics (mean 0, var 1) and the optimiser state, drawn on
  the host from ``key`` (``host_init``: no compilation of the network's init)."""
  shapes = abstract_variables(model, image_size)
  rng = host_init.rng_from_key(key)
  params = host_init.draw(shapes["params"], rng)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=host_init.draw(shapes["batch_stats"], rng),
                    opt_state=init_optimizer(tx, params))


def init_optimizer(tx: optax.GradientTransformation, params: Any) -> Any:
  """``tx.init(params)`` as one compiled program (run eagerly, it compiles one
  small program per leaf shape: seconds for a network's few hundred leaves)."""
  return jax.jit(tx.init)(params)


def cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray, smoothing: float) -> jnp.ndarray:
  """Mean softmax cross entropy of ``logits`` ``[B, K]`` against int ``labels`` ``[B]``."""
  targets = jax.nn.one_hot(labels, logits.shape[-1])
  if smoothing:
    targets = optax.smooth_labels(targets, smoothing)
  return optax.softmax_cross_entropy(logits, targets).mean()


def prepare_batch(images: jnp.ndarray, key: jax.Array, step: jnp.ndarray,
                  hyper: Hyper) -> tuple[jnp.ndarray, jax.Array]:
  """This device's shard of a step's batch, augmented, and its dropout key.

  Args:
    images: uint8 ``[b, H, W, 3]``, this device's shard of the global batch.
    key: the run's key (the same on every device).
    step: int32 scalar, the global step.
    hyper: the augmentation and normalisation (``mean``, ``std``, ``pad``, ``cutout``, ``flip``).
  Returns:
    ``(images float32 [b, H, W, 3], dropout_key)``: example ``i`` of the global
    batch augments with ``fold_in(augment_key, i)``, whatever the device count;
    the dropout key is ``fold_in(dropout_key, device)``.
  Must run inside ``pmap`` over ``AXIS``.
  """
  augment_key, dropout_key = jax.random.split(jax.random.fold_in(key, step))
  shard = images.shape[0]
  first = jax.lax.axis_index(AXIS) * shard
  example_keys = jax.vmap(functools.partial(jax.random.fold_in, augment_key))(
      first + jnp.arange(shard))
  images = augment.augment_batch(images, example_keys, hyper.mean, hyper.std, hyper.pad,
                                 hyper.cutout, hyper.flip)
  return images, jax.random.fold_in(dropout_key, jax.lax.axis_index(AXIS))


def train_step(state: TrainState, batch: dict[str, jnp.ndarray], key: jax.Array,
               length: Length, *, model: NasnetNetwork, tx: optax.GradientTransformation,
               hyper: Hyper) -> tuple[TrainState, dict[str, jnp.ndarray]]:
  """One SGD step on this device's shard, gradients and metrics averaged over ``AXIS``.

  Args:
    state: the replicated train state.
    batch: ``images`` uint8 ``[b, H, W, 3]``, ``labels`` int32 ``[b]`` (this device's shard).
    key: the run's key (the same on every device).
    length: the run's length, int32 scalars (the cosine rate and the drop-path ramp).
    model: a network with ``bn_axis_name=AXIS``.
    tx: ``make_optimizer``'s optimiser.
    hyper: static settings.

  Returns:
    The new state and metrics (loss, aux_loss, accuracy, l2_grads, l2_params,
    l2_updates), identical on every device.
  """
  images, dropout_key = prepare_batch(batch["images"], key, state.step, hyper)

  def loss_fn(params):
    (logits, aux_logits), updates = model.apply(
        {"params": params, "batch_stats": state.batch_stats}, images, train=True,
        step=state.step, total_steps=length.total_steps, rngs={"dropout": dropout_key},
        mutable=["batch_stats"])
    loss = cross_entropy(logits, batch["labels"], hyper.label_smoothing)
    aux_loss = (cross_entropy(aux_logits, batch["labels"], hyper.label_smoothing)
                if aux_logits is not None else jnp.zeros(()))
    total = loss + hyper.aux_weight * aux_loss
    return total, (loss, aux_loss, logits, updates["batch_stats"])

  grads, (loss, aux_loss, logits, batch_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
  grads = jax.lax.pmean(grads, AXIS)
  params, opt_state, updates = apply_sgd(
      tx, grads, state.opt_state, state.params,
      cosine_learning_rate(hyper.learning_rate, state.step, length))
  accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["labels"])
  metrics = jax.lax.pmean(dict(loss=loss, aux_loss=aux_loss, accuracy=accuracy), AXIS)
  metrics.update(l2_grads=optax.tree.norm(grads), l2_params=optax.tree.norm(params),
                 l2_updates=optax.tree.norm(updates))
  new_state = TrainState(step=state.step + 1, params=params, batch_stats=batch_stats,
                         opt_state=opt_state)
  return new_state, metrics


def eval_step(state: TrainState, batch: dict[str, jnp.ndarray], *, model: NasnetNetwork,
              hyper: Hyper) -> dict[str, jnp.ndarray]:
  """Sums over all devices of correct predictions, loss and examples of a batch
  whose ``mask`` ``[b]`` marks real (1) and padding (0) examples."""
  images = augment.normalize(batch["images"], hyper.mean, hyper.std)
  logits, _ = model.apply({"params": state.params, "batch_stats": state.batch_stats}, images,
                          train=False)
  mask = batch["mask"].astype(jnp.float32)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"])
  correct = (jnp.argmax(logits, -1) == batch["labels"]).astype(jnp.float32)
  return jax.lax.psum(dict(correct=jnp.sum(correct * mask), loss=jnp.sum(losses * mask),
                           count=jnp.sum(mask)), AXIS)


def replicate(tree: Any, devices: list[Any]) -> Any:
  """Copies every leaf of ``tree`` onto ``devices`` (a new leading axis) with the
  sharding that ``jax.pmap`` over ``AXIS`` gives its outputs.

  ``flax.jax_utils.replicate`` shards over a differently named mesh, so a pmapped
  step fed its own output would compile a second time (a minute for a child network
  on CPU); this keeps input and output shardings identical. The copies are made on
  the host: broadcasting on the device compiled one program per leaf shape (about
  160 small compilations, seconds, for a supernet's state).
  """
  sharding = jax.sharding.NamedSharding(jax.sharding.Mesh(np.asarray(devices), (AXIS,)),
                                        jax.sharding.PartitionSpec(AXIS))

  def copy(x):
    if _is_key(x):
      return jax.random.wrap_key_data(copy(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    x = np.asarray(x)
    return jax.device_put(np.broadcast_to(x, (len(devices),) + x.shape), sharding)

  return jax.tree.map(copy, tree)


def unreplicate(tree: Any) -> Any:
  """The first local device's copy of every leaf of a replicated ``tree`` (the leading
  device axis removed), as numpy arrays (typed PRNG keys stay keys).

  ``flax.jax_utils.unreplicate`` keeps the device axis of an array replicated on one
  device of a host that has several; this does not. The device axis is dropped on
  the host, which compiles nothing.
  """
  def first(x):
    if _is_key(x):
      return jax.random.wrap_key_data(first(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    return np.asarray(x.addressable_shards[0].data)[0]

  return jax.tree.map(first, tree)


def _is_key(x: Any) -> bool:
  return jnp.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key)


def pmap_devices(devices: Sequence[Any]) -> tuple[Any, ...]:
  """The devices a ``jax.pmap`` fed by this process's ``devices`` must span.

  One process: ``devices`` themselves. Several (``jax.distributed``): JAX wants
  every process's devices, in the same order on all, while each process feeds
  and receives only its own shards; collectives over the axis then reach every
  host. A multi-process run therefore uses all local devices.
  Raises:
    ValueError: ``devices`` are not all of this process's devices in a multi-process run.
  """
  if jax.process_count() == 1:
    return tuple(devices)
  if set(devices) != set(jax.local_devices()):
    raise ValueError(f"a multi-process run trains on all {len(jax.local_devices())} local "
                     f"devices of every process, not {len(devices)} of them.")
  return tuple(jax.devices())


def pmapped_steps(model: NasnetNetwork, tx: optax.GradientTransformation, hyper: Hyper,
                  length: Length, devices: list[Any] | None = None) -> tuple[Callable, Callable]:
  """``(train_step, eval_step)`` pmapped over ``devices`` (default: all local; on a
  multi-process run, see ``pmap_devices``).

  ``train_step(state, batch, key)``: state replicated, batch sharded on a
  leading device axis, key replicated; the state is donated. ``length`` reaches
  the compiled step as data, and the pmapped functions are cached per (model,
  tx, hyper, devices): a second run of the same network in this process (the
  final training of a re-ranked arch) neither traces nor compiles again.
  """
  devices = tuple(devices or jax.local_devices())
  train, evaluate = _pmapped(model.clone(bn_axis_name=AXIS), tx, hyper, pmap_devices(devices))
  run_length = replicate(Length(*(np.int32(v) for v in length)), list(devices))
  return (lambda state, batch, key: train(state, batch, key, run_length)), evaluate


@functools.lru_cache(maxsize=8)
def _pmapped(model: NasnetNetwork, tx: optax.GradientTransformation, hyper: Hyper,
             devices: tuple[Any, ...]) -> tuple[Callable, Callable]:
  train = jax.pmap(functools.partial(train_step, model=model, tx=tx, hyper=hyper),
                   axis_name=AXIS, devices=devices, donate_argnums=(0,))
  evaluate = jax.pmap(functools.partial(eval_step, model=model, hyper=hyper),
                      axis_name=AXIS, devices=devices)
  return train, evaluate
