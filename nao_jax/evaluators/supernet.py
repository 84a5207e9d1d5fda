"""The NAO-WS supernet evaluator: train the shared weights, score archs with them (reference §6.1).

``SupernetEvaluator(space, data, config, seed, eval_every)`` (registered as
``supernet``: ``build(config)``) holds the supernet's train state replicated over
the local devices (on a multi-process run, every process's: each feeds its share
of the global batch and the gradients are averaged over all). It is a pool
evaluator (``evaluators.base``): its scores drift as the shared weights train,
so the search keeps a pool and re-scores it each round; ``before_round`` trains
the weights on the pool up to the round's scoring epoch (one round per
``eval_every`` epochs, the last epoch always scored), checkpointing every
``ckpt_every_steps`` steps inside the round.

* ``train_steps(pool, stop)`` runs global steps up to ``stop``; step
  ``t`` trains on minibatch ``t % steps_per_epoch`` of epoch
  ``t // steps_per_epoch`` (order a function of ``(seed, epoch)``) with the arch
  ``pool[rng(seed, t) % len(pool)]`` (uniform over the pool), so any range of
  steps is reproducible and a resumed run is exact.
* ``score(archs)`` is the top-1 accuracy of every arch on the *same* fixed
  ``eval_images`` validation images (§9 item 13), BatchNorm in batch-statistics
  mode (the supernet keeps no running statistics, §9 item 12). Archs are
  sharded over the devices and ``lax.map``-ped on each: one compiled call per
  pool, one compilation for every pool of that size.
* ``evaluate(archs)`` is the ``Evaluation`` list of the evaluator protocol
  (report: the accuracy and the epoch; cost: scoring seconds per arch).

The train step is the child trainer's pattern (``training.step``): written once
with ``axis_name='batch'`` (gradients, metrics and BatchNorm statistics
averaged over devices) and ``pmap``-ped; the arch is an argument, so one
compilation serves every arch.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any, Callable, Iterator, Sequence

from flax import serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from nao_jax import configuration
from nao_jax import data as data_lib
from nao_jax import progress as progress_lib
from nao_jax import spaces
from nao_jax import tensorboard
from nao_jax.data import augment
from nao_jax.evaluators.base import Evaluation, Evaluator
from nao_jax.models import supernet as supernet_lib
from nao_jax.training import step as step_lib

AXIS = step_lib.AXIS
SCORE_CHUNK = 8  # archs per device and compiled scoring call


def default_config() -> ml_collections.ConfigDict:
  """Reference §6.1 / §7.2 defaults."""
  return ml_collections.ConfigDict(dict(
      num_cells=3,  # N per stage: 3N + 2 = 11 cells.
      features=20,  # C.
      drop_path_keep_prob=0.9,
      epochs=150,
      batch_size=64,  # Global, split over the devices.
      learning_rate=0.025,  # Cosine per epoch to min_learning_rate.
      min_learning_rate=0.001,
      momentum=0.9,
      weight_decay=3e-4,
      clip_norm=5.0,
      pad=4, flip=True, cutout=0,  # Augmentation of the search (no Cutout).
      eval_images=500,  # Fixed validation images every arch is scored on.
      num_devices=0,  # 0 = all local devices.
      ckpt_every_steps=500,  # Checkpoints inside a round (and one after every round).
      dtype="float32",  # Compute dtype ('bfloat16': bf16 compute, float32 parameters).
  ))


def train_step(state: step_lib.TrainState, batch: dict[str, jnp.ndarray], arch: jnp.ndarray,
               key: jax.Array, *, model: supernet_lib.Supernet, tx: optax.GradientTransformation,
               schedule: optax.Schedule, total_steps: int, hyper: step_lib.Hyper
               ) -> tuple[step_lib.TrainState, dict[str, jnp.ndarray]]:
  """One SGD step of the supernet with ``arch`` int32 ``[2, B, 4]`` on this device's
  shard at learning rate ``schedule(step)``, drop path ramped over ``total_steps``
  (see ``training.step.train_step`` for the batch, key and metrics)."""
  images, dropout_key = step_lib.prepare_batch(batch["images"], key, state.step, hyper)

  def loss_fn(params):
    logits = model.apply({"params": params}, images, arch, train=True, step=state.step,
                         total_steps=total_steps, rngs={"dropout": dropout_key})
    return step_lib.cross_entropy(logits, batch["labels"], 0.0), logits

  grads, logits = jax.grad(loss_fn, has_aux=True)(state.params)
  grads = jax.lax.pmean(grads, AXIS)
  params, opt_state, _ = step_lib.apply_sgd(tx, grads, state.opt_state, state.params,
                                            schedule(state.step))
  loss = step_lib.cross_entropy(logits, batch["labels"], 0.0)
  accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["labels"])
  metrics = jax.lax.pmean(dict(loss=loss, accuracy=accuracy), AXIS)
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def score_archs(params: Any, images: jnp.ndarray, labels: jnp.ndarray, archs: jnp.ndarray, *,
                model: supernet_lib.Supernet) -> jnp.ndarray:
  """Top-1 accuracy float32 ``[N]`` of each of ``archs`` int32 ``[N, 2, B, 4]`` on the
  normalised ``images`` ``[M, H, W, 3]`` (batch-statistics BN), one arch after the
  other (``lax.map``: the op switch stays a real branch)."""
  def one(arch):
    logits = model.apply({"params": params}, images, arch)
    return jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
  return jax.lax.map(one, archs)


class SupernetEvaluator(Evaluator):
  """Trains the supernet and scores archs with it (see the module docstring).

  Attributes:
    space: the ``nasnet`` ws5 space.
    state: the replicated ``TrainState`` (``batch_stats`` is empty).
    steps_per_epoch, total_steps: of the whole supernet training.
    scoring_epochs: the epochs after which the pool is scored, one per round.
  """
  search_metric = "supernet_accuracy"
  report_metric = "supernet_accuracy"
  cost_unit = "seconds"
  rescores_pool = True

  def __init__(self, space: Any, data: data_lib.ImageData, config: ml_collections.ConfigDict,
               seed: int, eval_every: int | None = None):
    """``config``: a ``default_config()`` section; ``eval_every``: epochs between
    scorings of the pool (default: once, after the last epoch)."""
    supernet_lib.check_space(space)
    if data.valid is None:
      raise ValueError("the supernet scores archs on a validation split; set "
                       "config.data.split='search'.")
    local = jax.local_devices()
    wanted = config.num_devices or len(local)
    processes = jax.process_count()
    configuration.check(config, [
        ("num_devices", 1 <= wanted <= len(local) and (processes == 1 or wanted == len(local)),
         f"this host has {len(local)} devices; use 0 (all) or 1..{len(local)} (all on a "
         "multi-process run)"),
        ("batch_size", config.batch_size >= 1 and config.batch_size % (wanted * processes) == 0,
         f"must be a positive multiple of the {wanted * processes} devices"),
        ("batch_size", config.batch_size <= len(data.train),
         f"exceeds the {len(data.train)} training images"),
        ("eval_images", 1 <= config.eval_images <= len(data.valid),
         f"must be in [1, {len(data.valid)}] (validation images)"),
        ("epochs", config.epochs >= 1, "must be >= 1"),
        ("ckpt_every_steps", config.ckpt_every_steps >= 1, "must be >= 1"),
        ("dtype", config.dtype in ("float32", "bfloat16"),
         "choose 'float32' or 'bfloat16'"),
    ])
    eval_every = eval_every or config.epochs
    self.scoring_epochs = [e for e in range(1, config.epochs + 1)
                           if e % eval_every == 0 or e == config.epochs]
    self.num_rounds = len(self.scoring_epochs)
    self.space, self.data, self.config, self.seed = space, data, config, int(seed)
    self.devices = local[:wanted]
    self.steps_per_epoch = len(data.train) // config.batch_size
    self.total_steps = self.steps_per_epoch * config.epochs
    self.model = supernet_lib.from_space(
        space, num_cells=config.num_cells, features=config.features,
        num_classes=data.num_classes, drop_path_keep_prob=config.drop_path_keep_prob,
        dtype=jnp.dtype(config.dtype))
    self.schedule = functools.partial(  # step -> learning rate
        step_lib.cosine_learning_rate, config.learning_rate,
        length=step_lib.Length(config.epochs, self.steps_per_epoch),
        minimum=config.min_learning_rate)
    self.tx = step_lib.make_optimizer(config.momentum, config.weight_decay, config.clip_norm)
    hyper = step_lib.Hyper(mean=data.mean, std=data.std, pad=config.pad, cutout=config.cutout,
                           flip=config.flip)
    params = supernet_lib.init_params(self.model, seed, data.train.images.shape[1])
    host_state = step_lib.TrainState(
        step=jnp.zeros((), jnp.int32), params=params, batch_stats={},
        opt_state=step_lib.init_optimizer(self.tx, params))
    self.state = step_lib.replicate(host_state, self.devices)
    self._train = jax.pmap(functools.partial(
        train_step, model=self.model.clone(bn_axis_name=AXIS), tx=self.tx,
        schedule=self.schedule, total_steps=self.total_steps, hyper=hyper),
        axis_name=AXIS, devices=step_lib.pmap_devices(self.devices), donate_argnums=(0,))
    # Scoring has no collectives: every process scores the whole pool on its own
    # devices with the same weights, so all reach the same scores.
    self._score = jax.pmap(functools.partial(score_archs, model=self.model),
                           in_axes=(0, None, None, 0), devices=self.devices)
    self._key = step_lib.replicate(jax.random.key(seed), self.devices)
    order = np.random.default_rng([self.seed, 2]).permutation(len(data.valid))
    fixed = data.valid.take(np.sort(order[:config.eval_images]))
    self.eval_images = augment.normalize(jnp.asarray(fixed.images), data.mean, data.std)
    self.eval_labels = jnp.asarray(fixed.labels)
    self._announced = False
    self._writer = tensorboard.Writer(None)  # Until the search gives one (``observe``).

  # ---- state ----------------------------------------------------------------

  @property
  def step(self) -> int:
    return int(self.state.step[0])

  def host_state(self) -> step_lib.TrainState:
    """The train state on the host (for checkpoints)."""
    return step_lib.unreplicate(self.state)

  def load_state(self, host_state: step_lib.TrainState) -> None:
    self.state = step_lib.replicate(host_state, self.devices)

  # ---- training -------------------------------------------------------------

  def arch_index(self, step: int, pool_size: int) -> int:
    """The pool index trained at global ``step`` (uniform, a function of (seed, step))."""
    return int(np.random.default_rng([self.seed, 1, step]).integers(pool_size))

  def batch(self, step: int) -> dict[str, np.ndarray]:
    """This process's share of the global batch of ``step``, ``[local devices,
    per_device, ...]`` (one process: the whole batch)."""
    epoch, index = divmod(step, self.steps_per_epoch)
    order = np.random.default_rng([self.seed, 0, epoch]).permutation(len(self.data.train))
    size = self.config.batch_size
    share = size // jax.process_count()
    first = index * size + jax.process_index() * share
    split = self.data.train.take(order[first:first + share])
    d = len(self.devices)
    return {"images": split.images.reshape(d, -1, *split.images.shape[1:]),
            "labels": split.labels.reshape(d, -1)}

  def train_steps(self, pool: np.ndarray, stop: int) -> dict[str, float]:
    """Trains from the current step to global step ``stop`` on ``pool`` int32
    ``[P, 2, B, 4]``; returns the mean loss and accuracy of those steps."""
    metrics = []
    for step in range(self.step, stop):
      arch = pool[self.arch_index(step, len(pool))]
      archs = np.broadcast_to(arch, (len(self.devices),) + arch.shape)
      self.state, m = self._train(self.state, self.batch(step), archs, self._key)
      metrics.append(m)
    if not metrics:
      return {}
    means = {k: float(np.mean([float(m[k][0]) for m in metrics])) for k in metrics[0]}
    if not math.isfinite(means["loss"]):
      raise FloatingPointError(f"supernet loss is {means['loss']} before step {stop}; lower "
                               "supernet.learning_rate.")
    return means

  # ---- scoring --------------------------------------------------------------

  def score_arrays(self, archs: np.ndarray) -> np.ndarray:
    """Accuracies float64 ``[N]`` of ``archs`` int32 ``[N, 2, B, 4]`` (see ``score_archs``),
    in calls of ``SCORE_CHUNK`` archs per device, so one compiled function serves every ``N``."""
    n, d = len(archs), len(self.devices)
    per_call = SCORE_CHUNK * d
    calls = -(-n // per_call)
    padded = np.concatenate([archs, np.repeat(archs[:1], calls * per_call - n, 0)])
    scores = [self._score(self.state.params, self.eval_images, self.eval_labels,
                          chunk.reshape(d, SCORE_CHUNK, *archs.shape[1:]))
              for chunk in np.split(padded, calls)]
    return np.asarray(jax.device_get(scores), np.float64).reshape(-1)[:n]

  def score(self, archs: Sequence[Any]) -> np.ndarray:
    return self.score_arrays(supernet_lib.arch_arrays(self.space, archs))

  # ---- the evaluator protocol (evaluators.base) ------------------------------

  def evaluate(self, archs: Sequence[Any]) -> list[Evaluation]:
    """Every arch's accuracy on the fixed validation images with the current
    shared weights, in one batched scoring; cost: the seconds per arch."""
    started = time.time()
    scores = self.score(archs)
    seconds = (time.time() - started) / max(len(scores), 1)
    epoch = self.step // self.steps_per_epoch
    return [Evaluation(float(s), {self.report_metric: float(s), "epoch": epoch}, seconds)
            for s in scores]

  def evaluate_each(self, archs: Sequence[Any]) -> Iterator[tuple[int, Evaluation]]:
    yield from enumerate(self.evaluate(archs) if len(archs) else ())

  def before_round(self, round_: int, archs: Sequence[Any],
                   checkpoint: Callable[[], None]) -> None:
    """Trains the shared weights on ``archs`` (one drawn per step) up to the end of
    epoch ``scoring_epochs[round_]``, printing a line per epoch, and calls
    ``checkpoint()`` at every multiple of ``ckpt_every_steps`` inside the round."""
    pool = supernet_lib.arch_arrays(self.space, archs)
    last = self.scoring_epochs[round_] * self.steps_per_epoch
    if self.step < last and not self._announced:
      params = sum(int(np.prod(x.shape[1:])) for x in jax.tree.leaves(self.state.params))
      print(f"supernet of {self.model.total_cells} cells (C={self.model.features}, "
            f"{params:,} parameters) on {len(self.devices)} {self.devices[0].device_kind}: "
            f"{self.total_steps} steps, the pool scored after epochs {self.scoring_epochs}; the "
            "first step includes compiling the train step (minutes on a CPU)", flush=True)
      self._announced = True
    spe, every, started = self.steps_per_epoch, self.config.ckpt_every_steps, time.time()
    bar = progress_lib.bar(last, f"supernet to epoch {self.scoring_epochs[round_]}", "step",
                           min(self.step, last))
    while self.step < last:
      begin, t0 = self.step, time.time()
      stop = min((begin // spe + 1) * spe, (begin // every + 1) * every)
      metrics = self.train_steps(pool, stop)
      rate = (stop - begin) * self.config.batch_size / max(time.time() - t0, 1e-9)
      bar.update(stop - begin)
      learning_rate = float(self.schedule(stop - 1))
      print(f"supernet step {stop}/{self.total_steps} epoch {stop // spe} loss "
            f"{metrics['loss']:.4f} acc {metrics['accuracy']:.4f} lr "
            f"{learning_rate:.5f} {rate:.1f} images/s | "
            f"{time.time() - started:.0f}s", flush=True)
      self._writer.scalars(stop, {"supernet/loss": metrics["loss"],
                                  "supernet/accuracy": metrics["accuracy"],
                                  "supernet/learning_rate": learning_rate,
                                  "supernet/images_per_second": rate})
      if stop % every == 0 and stop < last:
        checkpoint()
    bar.close()

  def observe(self, writer: tensorboard.Writer) -> None:
    self._writer = writer

  def save(self) -> tuple[dict[str, Any], dict[str, Any]]:
    return serialization.to_state_dict(self.host_state()), {"step": self.step}

  def restore(self, arrays: dict[str, Any], record: dict[str, Any]) -> None:
    self.load_state(serialization.from_state_dict(self.host_state(), arrays))
    if self.step != record.get("step"):
      raise ValueError(f"supernet checkpoint: step {self.step} but its record says "
                       f"{record.get('step')}; the checkpoint is corrupt. Use a new workdir.")
    print(f"resumed at supernet step {self.step}/{self.total_steps}", flush=True)


def build(config: ml_collections.ConfigDict) -> SupernetEvaluator:
  """The evaluator of ``config.evaluator.name = 'supernet'``: the ``nasnet``
  space of ``config.space``, the data of ``config.data`` (its ``search`` split),
  the supernet of ``config.supernet``, the pool scored every
  ``config.search.eval_every`` epochs."""
  configuration.check(config, [
      ("search.eval_every", isinstance(configuration.value(config, "search.eval_every"), int)
       and config.search.eval_every >= 1, "must be an integer >= 1 epoch")])
  with configuration.section("space"):
    space = spaces.get("nasnet", **config.space)
  with configuration.section("data"):
    data = data_lib.load(config.data)
  if data.valid is None:
    raise configuration.ConfigError(
        "data.split", f"the supernet scores archs on a validation split; use 'search' (got "
        f"{config.data.split!r}).")
  with configuration.section("supernet"):
    return SupernetEvaluator(space, data, config.supernet, config.seed,
                             config.search.eval_every)
