"""DARTS (Liu, Simonyan & Yang, "DARTS: Differentiable Architecture Search", ICLR 2019)
on the ``nasnet`` ws5 space and the NAS-Bench-201 cell (relaxation: ``oneshot.mixed``).

``run(config, workdir)`` is the ``darts`` job: ``search`` then ``workdir/best_arch.json``
(``{"space", <the arch's JSON fields>, "string", "hash", "darts_valid_accuracy"}`` and,
for ``nb201``, the found cell's NAS-Bench-201 accuracies, the benchmark's protocol).
``search(config, workdir) -> (space, record)`` is the search alone, its ``record``
shaped like a search history line (``arch``, ``string``, ``hash``, ``score``,
``report``) for the NAO-WS pipeline's re-ranking and final training.

Every step (paper Algorithm 1) first updates the architecture parameters ``alphas``
on a validation batch, then the weights on a training batch:

1. ``config.darts.order = 2`` (second order): the gradient of the unrolled validation
   loss ``L_val(w - xi grad_w L_train(w, a), a)`` in ``a``, ``xi`` the weights'
   current learning rate (paper eq. 6-7): ``grad_a L_val(w', a) - xi H v`` with
   ``v = grad_w' L_val(w', a)`` and ``H v`` the mixed second derivative of
   ``L_train`` times ``v``, computed *exactly* as the forward-mode derivative
   (``jax.jvp``) of ``grad_a L_train(., a)`` at ``w`` along ``v`` (the quantity
   the paper's eq. 8 approximates by finite differences). ``order = 1``:
   ``grad_a L_val(w, a)``. Adam (lr 3e-4, betas (0.5, 0.999)) with weight decay
   1e-3 added to the gradient, as PyTorch's Adam in DARTS.
2. SGD with momentum 0.9, weight decay 3e-4 and gradient clipping 5 on the
   training batch with the new ``alphas``, learning rate cosine per epoch 0.025 -> 0.001.

Deviation: DARTS' code unrolls with its momentum buffer and weight decay in
``w'``; this follows the paper's plain gradient step (eq. 6), which the
hypergradient test checks against finite differences.

Data: ``config.data``'s ``search`` split; step ``t`` trains on minibatch
``t % steps_per_epoch`` of training epoch ``t // steps_per_epoch`` and updates
``alphas`` on the validation minibatch ``t`` of a stream that cycles through the
validation set (orders a function of ``(seed, epoch)``); both are augmented
(crops, flips) as DARTS' queues are. Weights, ``alphas``, both optimiser states,
the step and the per-epoch records are checkpointed every
``ckpt_every_steps`` and at each epoch's end, so a resumed run equals an
uninterrupted one. Per epoch: a line of progress, TensorBoard scalars under
``workdir/tb/search`` (``darts/*``: losses, accuracies, the alphas' mean
entropy, the learning rate, for ``nb201`` the table accuracy of the current
cell) and ``workdir/darts_epochs.jsonl`` (the same and the current
discretised arch).
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from typing import Any, Callable, NamedTuple

import flax
from flax import serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from nao_jax import atomic
from nao_jax import checkpoint
from nao_jax import configuration
from nao_jax import data as data_lib
from nao_jax import progress as progress_lib
from nao_jax import spaces
from nao_jax import tensorboard
from nao_jax.evaluators import tabular
from nao_jax.models import host_init
from nao_jax.oneshot import mixed
from nao_jax.training import step as step_lib

AXIS = step_lib.AXIS
SEARCH_METRIC = "darts_valid_accuracy"
METRICS = ("train_loss", "train_accuracy", "valid_loss", "valid_accuracy")


def default_config() -> ml_collections.ConfigDict:
  """DARTS' CIFAR-10 search settings (paper §3.1.1; 8 cells of C=16 is ``num_cells=2``)."""
  return ml_collections.ConfigDict(dict(
      order=2,  # 1: first-order DARTS; 2: second order (the unrolled hypergradient).
      num_cells=2,  # nasnet: N per stage, 3N + 2 cells; nb201: cells per stage.
      features=16,  # C of the first stage.
      epochs=50,
      batch_size=64,  # Global, split over the devices; one training and one validation batch.
      learning_rate=0.025,  # Weights: cosine per epoch to min_learning_rate.
      min_learning_rate=0.001,
      momentum=0.9,
      weight_decay=3e-4,
      clip_norm=5.0,
      arch_learning_rate=3e-4,  # alphas: Adam.
      arch_beta1=0.5,
      arch_beta2=0.999,
      arch_weight_decay=1e-3,
      alpha_init_scale=1e-3,  # alphas start as this times a standard normal.
      pad=4, flip=True, cutout=0,  # Augmentation of both batches.
      num_devices=0,  # 0 = all local devices.
      ckpt_every_steps=500,  # And at every epoch's end.
      table_path="",  # nb201: nb201_acc.npz; empty: found in the data directories.
      table_metric="c10_test_200",  # nb201: the column reported as the found cell's accuracy.
  ))


class DartsState(flax.struct.PyTreeNode):
  """Everything a search step changes."""
  step: jnp.ndarray  # int32 scalar, the number of steps done.
  params: Any
  opt_state: Any
  alphas: Any  # {name: float32 [edges, ops]} (mixed.alpha_shapes).
  alpha_opt_state: Any


@functools.lru_cache(maxsize=None)
def arch_optimizer(learning_rate: float, beta1: float, beta2: float,
                   weight_decay: float) -> optax.GradientTransformation:
  """Adam on ``alphas`` with L2 weight decay added to the gradient (PyTorch's
  ``Adam(weight_decay=...)``, as DARTS uses it). Cached: equal settings give the
  same object, so ``_pmapped_step`` recognises them."""
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     optax.scale_by_adam(beta1, beta2, eps=1e-8),
                     optax.scale(-learning_rate))


class Cosine(NamedTuple):
  """The weights' learning rate at a step (``training.step.cosine_learning_rate``, per
  epoch from ``base`` to ``minimum``), hashable so that equal schedules share a step."""
  base: float
  epochs: int
  steps_per_epoch: int
  minimum: float

  def __call__(self, step: Any) -> jnp.ndarray:
    return step_lib.cosine_learning_rate(
        self.base, step, step_lib.Length(self.epochs, self.steps_per_epoch), self.minimum)


LossFn = Callable[[Any, Any, Any], tuple[jnp.ndarray, jnp.ndarray]]


def loss_and_accuracy(model: Any, params: Any, alphas: Any,
                      batch: tuple[jnp.ndarray, jnp.ndarray]) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Mean cross entropy and accuracy (scalars) of the mixed network ``model`` with
  ``alphas`` on ``batch``: normalised images ``[b, H, W, 3]``, int labels ``[b]``."""
  images, labels = batch
  out = mixed.logits(model, params, images, mixed.mixing_weights(alphas))
  return (step_lib.cross_entropy(out, labels, 0.0),
          jnp.mean((jnp.argmax(out, -1) == labels).astype(jnp.float32)))


def unrolled_gradient(loss_fn: LossFn, params: Any, alphas: Any, train: Any, valid: Any,
                      xi: Any, axis_name: str | None = None) -> tuple[Any, tuple[Any, Any]]:
  """The second-order DARTS hypergradient (module docstring), exact.

  Args:
    loss_fn: ``(params, alphas, batch) -> (loss, aux)`` scalars.
    params, alphas: the weights ``w`` and architecture parameters ``a`` (pytrees).
    train, valid: the batches of ``L_train`` and ``L_val``.
    xi: the unrolled step's learning rate (scalar).
    axis_name: the pmap axis whose mean the losses are (None: this batch only).

  Returns:
    ``(d/da L_val(w - xi grad_w L_train(w, a), a), (L_val, aux))``, the gradient
    shaped like ``alphas``, the loss and aux at the unrolled weights.
  """
  def mean(tree):
    return tree if axis_name is None else jax.lax.pmean(tree, axis_name)

  def train_loss(p, a):
    return loss_fn(p, a, train)[0]

  grad_w = mean(jax.grad(train_loss)(params, alphas))
  unrolled = jax.tree.map(lambda p, g: p - xi * g, params, grad_w)
  (loss, aux), (grad_unrolled, grad_alphas) = jax.value_and_grad(
      loss_fn, (0, 1), has_aux=True)(unrolled, alphas, valid)
  grad_unrolled, grad_alphas = mean((grad_unrolled, grad_alphas))

  def train_grad_alphas(p):
    # Differentiated in (p, a) although only the alphas' part is used: forward mode
    # through models.layers' custom_vjp ops needs the inner grad to trace every op
    # that reads p (XLA drops the unused weight gradient).
    return mean(jax.grad(train_loss, (0, 1))(p, alphas)[1])

  _, second = jax.jvp(train_grad_alphas, (params,), (grad_unrolled,))
  return jax.tree.map(lambda g, s: g - xi * s, grad_alphas, second), (loss, aux)


def search_step(state: DartsState, train: dict[str, jnp.ndarray], valid: dict[str, jnp.ndarray],
                key: jax.Array, *, model: Any, tx: optax.GradientTransformation,
                alpha_tx: optax.GradientTransformation, schedule: optax.Schedule,
                hyper: step_lib.Hyper, order: int) -> tuple[DartsState, dict[str, jnp.ndarray]]:
  """One DARTS step on this device's shards (inside ``pmap`` over ``AXIS``).

  Args:
    state: the replicated state.
    train, valid: ``images`` uint8 ``[b, H, W, 3]`` and ``labels`` int32 ``[b]``,
      this device's shard of the step's training and validation batches.
    key: the run's key; the batches augment with ``fold_in(key, 0)`` and ``(key, 1)``
      (``training.step.prepare_batch``: then folded with the step).
    model: the mixed network with ``bn_axis_name=AXIS``; tx: the weights' SGD
      (``step.make_optimizer``); alpha_tx: ``arch_optimizer``; schedule: step -> lr.
    order: 1 or 2 (module docstring).

  Returns:
    The new state and the step's metrics (``METRICS``), the same on every device.
  """
  learning_rate = schedule(state.step)
  batches = [(step_lib.prepare_batch(b["images"], jax.random.fold_in(key, i), state.step,
                                     hyper)[0], b["labels"]) for i, b in enumerate((train, valid))]
  loss_fn = functools.partial(loss_and_accuracy, model)
  if order == 2:
    grad_alphas, (valid_loss, valid_accuracy) = unrolled_gradient(
        loss_fn, state.params, state.alphas, batches[0], batches[1], learning_rate, AXIS)
  else:
    (valid_loss, valid_accuracy), grad_alphas = jax.value_and_grad(loss_fn, 1, has_aux=True)(
        state.params, state.alphas, batches[1])
    grad_alphas = jax.lax.pmean(grad_alphas, AXIS)
  updates, alpha_opt_state = alpha_tx.update(grad_alphas, state.alpha_opt_state, state.alphas)
  alphas = optax.apply_updates(state.alphas, updates)
  (train_loss, train_accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params, alphas, batches[0])
  params, opt_state, _ = step_lib.apply_sgd(tx, jax.lax.pmean(grads, AXIS), state.opt_state,
                                            state.params, learning_rate)
  metrics = jax.lax.pmean(dict(train_loss=train_loss, train_accuracy=train_accuracy,
                               valid_loss=valid_loss, valid_accuracy=valid_accuracy), AXIS)
  return DartsState(step=state.step + 1, params=params, opt_state=opt_state, alphas=alphas,
                    alpha_opt_state=alpha_opt_state), metrics


@functools.lru_cache(maxsize=4)
def _pmapped_step(model: Any, tx: optax.GradientTransformation,
                  alpha_tx: optax.GradientTransformation, schedule: Cosine,
                  hyper: step_lib.Hyper, order: int, devices: tuple[Any, ...]) -> Callable:
  """``search_step`` pmapped over ``devices`` (state donated), cached: a second search
  of the same settings in this process (a resume, the NAO-WS pipeline) compiles nothing."""
  return jax.pmap(functools.partial(search_step, model=model, tx=tx, alpha_tx=alpha_tx,
                                    schedule=schedule, hyper=hyper, order=order),
                  axis_name=AXIS, devices=devices, donate_argnums=(0,))


def init_params(model: Any, space: Any, seed: int, image_size: int) -> Any:
  """The weights of ``model``, the mixed network of ``space``, drawn on the host
  (``models.host_init``: Kaiming-normal kernels, BN scales ones, biases zeros)."""
  images = jax.ShapeDtypeStruct((2, image_size, image_size, 3), jnp.float32)
  weights = {k: jax.ShapeDtypeStruct(s, jnp.float32)
             for k, s in mixed.alpha_shapes(space).items()}
  shapes = jax.eval_shape(functools.partial(model.init, {"params": jax.random.key(0)}),
                          images, weights)
  return host_init.draw(shapes["params"], np.random.default_rng([seed, 4]))


class Darts:
  """The search's data, mixed network and replicated state (module docstring).

  Attributes:
    space: the searched space; state: the replicated ``DartsState``;
    steps_per_epoch, total_steps: of the whole search.
  """

  def __init__(self, space: Any, data: data_lib.ImageData, config: ml_collections.ConfigDict,
               seed: int):
    """``config``: a ``default_config()`` section (errors name its fields); ``data``
    needs a validation split."""
    local = jax.local_devices()
    wanted = config.num_devices or len(local)
    devices = wanted * jax.process_count()
    configuration.check(config, [
        ("order", config.order in (1, 2), "must be 1 (first order) or 2 (second order)"),
        ("num_devices", 1 <= wanted <= len(local) and (jax.process_count() == 1
                                                        or wanted == len(local)),
         f"this host has {len(local)} devices; use 0 (all) or 1..{len(local)}"),
        ("batch_size", config.batch_size >= 1 and config.batch_size % devices == 0,
         f"must be a positive multiple of the {devices} devices"),
        ("batch_size", config.batch_size <= min(len(data.train), len(data.valid)),
         f"exceeds the {len(data.train)} training or {len(data.valid)} validation images"),
        ("epochs", config.epochs >= 1, "must be >= 1"),
        ("ckpt_every_steps", config.ckpt_every_steps >= 1, "must be >= 1"),
        ("features", config.features >= 2 and config.features % 2 == 0,
         "must be an even number >= 2"),
        ("num_cells", config.num_cells >= (1 if space.name == "nb201" else 0),
         "must be >= 1 for nb201, >= 0 for nasnet"),
    ])
    self.space, self.data, self.config, self.seed = space, data, config, int(seed)
    self.devices = local[:wanted]
    self.steps_per_epoch = len(data.train) // config.batch_size
    self.valid_steps = len(data.valid) // config.batch_size
    self.total_steps = self.steps_per_epoch * config.epochs
    self.model = mixed.network(space, data.num_classes, config.num_cells, config.features)
    self.schedule = Cosine(float(config.learning_rate), int(config.epochs),
                           self.steps_per_epoch, float(config.min_learning_rate))
    tx = step_lib.make_optimizer(config.momentum, config.weight_decay, config.clip_norm)
    alpha_tx = arch_optimizer(config.arch_learning_rate, config.arch_beta1, config.arch_beta2,
                              config.arch_weight_decay)
    params = init_params(self.model, space, seed, data.train.images.shape[1])
    alphas = jax.device_put(mixed.init_alphas(space, np.random.default_rng([self.seed, 3]),
                                              config.alpha_init_scale))
    self.state = step_lib.replicate(DartsState(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=step_lib.init_optimizer(tx, params),
        alphas=alphas, alpha_opt_state=step_lib.init_optimizer(alpha_tx, alphas)), self.devices)
    hyper = step_lib.Hyper(mean=data.mean, std=data.std, pad=config.pad, cutout=config.cutout,
                           flip=config.flip)
    self._step = _pmapped_step(self.model.clone(bn_axis_name=AXIS), tx, alpha_tx,
                               self.schedule, hyper, config.order,
                               step_lib.pmap_devices(self.devices))
    self._key = step_lib.replicate(jax.random.key(seed), self.devices)

  @property
  def step(self) -> int:
    return int(self.state.step[0])

  def host_state(self) -> DartsState:
    return step_lib.unreplicate(self.state)

  def load_state(self, host_state: DartsState) -> None:
    self.state = step_lib.replicate(host_state, self.devices)

  def alphas(self) -> dict[str, np.ndarray]:
    """The current architecture parameters on the host, float32 ``[edges, ops]`` each."""
    return {k: np.asarray(v) for k, v in step_lib.unreplicate(self.state.alphas).items()}

  def arch(self) -> Any:
    """The current discretised arch (``mixed.discretize``)."""
    return mixed.discretize(self.space, self.alphas())

  def _shard(self, split: data_lib.Split, stream: int, epoch: int,
             index: int) -> dict[str, np.ndarray]:
    """This process's share of minibatch ``index`` of ``epoch`` of ``split`` in the
    order of ``(seed, stream, epoch)``, ``[local devices, per device, ...]``."""
    order = np.random.default_rng([self.seed, stream, epoch]).permutation(len(split))
    size = self.config.batch_size
    share = size // jax.process_count()
    first = index * size + jax.process_index() * share
    batch = split.take(order[first:first + share])
    d = len(self.devices)
    return {"images": batch.images.reshape(d, -1, *batch.images.shape[1:]),
            "labels": batch.labels.reshape(d, -1)}

  def train_steps(self, stop: int) -> list[dict[str, float]]:
    """Runs the steps from the current one to ``stop``; returns each step's metrics."""
    metrics = []
    for step in range(self.step, stop):
      train = self._shard(self.data.train, 0, *divmod(step, self.steps_per_epoch))
      valid = self._shard(self.data.valid, 1, *divmod(step, self.valid_steps))
      self.state, m = self._step(self.state, train, valid, self._key)
      metrics.append(m)
    metrics = [{k: float(v[0]) for k, v in m.items()} for m in jax.device_get(metrics)]
    bad = [m for m in metrics if not all(math.isfinite(v) for v in m.values())]
    if bad:
      raise FloatingPointError(f"DARTS metrics {bad[0]} before step {stop}; lower "
                               "darts.learning_rate or darts.arch_learning_rate.")
    return metrics


def _space(config: ml_collections.ConfigDict) -> Any:
  """``config.space``: ``{name: 'nb201'}`` or the nasnet settings (``name`` optional)."""
  settings = dict(config.space)
  name = settings.pop("name", "nasnet")
  with configuration.section("space"):
    space = spaces.get(name, **settings)
    mixed.alpha_shapes(space)
  return space


def _epoch_line(space: Any, record: dict[str, Any], epochs: int) -> str:
  table = "".join(f" | table {k} {v:.2f}" for k, v in record["report"].items())
  return (f"darts epoch {record['epoch']}/{epochs} step {record['step']}: train loss "
          f"{record['train_loss']:.4f} acc {record['train_accuracy']:.4f} | valid loss "
          f"{record['valid_loss']:.4f} acc {record['valid_accuracy']:.4f} | alpha entropy "
          f"{record['alpha_entropy']:.4f} | lr {record['learning_rate']:.5f}{table} | "
          f"{record['seconds']:.0f}s | {record['string']}")


def search(config: ml_collections.ConfigDict, workdir: str) -> tuple[Any, dict[str, Any]]:
  """Runs (or resumes) DARTS in ``workdir`` on ``config.space``, ``config.data`` and
  ``config.darts``; returns ``(space, record)`` of the final discretised arch:
  ``record`` has ``arch`` (its JSON object), ``string``, ``hash``, ``score`` (the
  last epoch's validation accuracy of the mixed network) and ``report`` (for
  ``nb201`` the table's search and ``table_metric`` columns, else empty)."""
  space = _space(config)
  with configuration.section("data"):
    data = data_lib.load(config.data)
  if data.valid is None:
    raise configuration.ConfigError("data.split", "DARTS updates alphas on a validation split; "
                                    f"use 'search' (got {config.data.split!r}).")
  table = None
  with configuration.section("darts"):
    searcher = Darts(space, data, config.darts, config.seed)  # Checks the settings first.
    if space.name == "nb201":
      table = tabular.Nb201Table(config.darts.table_path or None,
                                 report_metric=config.darts.table_metric)

  def lookup(arch: Any) -> dict[str, float]:
    if table is None:
      return {}
    evaluation = table.evaluate([arch])[0]
    return {table.search_metric: evaluation.score, **evaluation.report}

  checkpoints = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
  epochs, sums, count = [], dict.fromkeys(METRICS, 0.0), 0
  if checkpoints.latest_step() is not None:
    arrays, metadata = checkpoints.restore(serialization.to_state_dict(searcher.host_state()))
    searcher.load_state(serialization.from_state_dict(searcher.host_state(), arrays))
    epochs, sums, count = metadata["epochs"], metadata["sums"], metadata["count"]
    print(f"resumed DARTS at step {searcher.step}/{searcher.total_steps}", flush=True)
  spe, every = searcher.steps_per_epoch, config.darts.ckpt_every_steps
  print(f"DARTS (order {config.darts.order}) on {space.signature()}: {searcher.total_steps} steps "
        f"on {len(searcher.devices)} {searcher.devices[0].device_kind}; the first includes "
        "compiling the step", flush=True)
  started = time.time()
  try:
    with (tensorboard.writer(workdir, "search") as tb,
          progress_lib.bar(searcher.total_steps, "darts", "step", searcher.step) as bar):
      while searcher.step < searcher.total_steps:
        begin = searcher.step
        stop = min((begin // spe + 1) * spe, (begin // every + 1) * every)
        for m in searcher.train_steps(stop):
          sums = {k: sums[k] + m[k] for k in METRICS}
          count += 1
        bar.update(stop - begin)
        if stop % spe == 0:
          arch = searcher.arch()
          record = {"epoch": stop // spe, "step": stop, **{k: sums[k] / count for k in METRICS},
                    "alpha_entropy": mixed.entropy(searcher.alphas()),
                    "learning_rate": float(searcher.schedule(stop - 1)),
                    "arch": json.loads(space.to_json(arch)), "string": space.to_string(arch),
                    "report": lookup(arch), "seconds": time.time() - started}
          epochs.append(record)
          sums, count = dict.fromkeys(METRICS, 0.0), 0
          print(_epoch_line(space, record, config.darts.epochs), flush=True)
          tb.scalars(stop, {f"darts/{k}": record[k] for k in
                            (*METRICS, "alpha_entropy", "learning_rate")})
          tb.scalars(stop, {f"darts/table_{k}": v for k, v in record["report"].items()})
          atomic.write_jsonl(os.path.join(workdir, "darts_epochs.jsonl"), epochs)
        checkpoints.save(stop, serialization.to_state_dict(searcher.host_state()),
                         {"epochs": epochs, "sums": sums, "count": count})
  finally:
    checkpoints.close()
  arch = searcher.arch()
  return space, {"arch": json.loads(space.to_json(arch)), "string": space.to_string(arch),
                 "hash": space.arch_hash(arch), "score": epochs[-1]["valid_accuracy"],
                 "report": lookup(arch)}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """The ``darts`` job: ``search`` and ``workdir/best_arch.json``; returns its summary."""
  space, best = search(config, workdir)
  summary = {**best["arch"], "space": space.signature(), "string": best["string"],
             "hash": best["hash"], SEARCH_METRIC: best["score"], **best["report"]}
  path = atomic.write_json(os.path.join(workdir, "best_arch.json"), summary)
  table = "".join(f", {k} {v:.2f}" for k, v in best["report"].items())
  print(f"DARTS found {best['string']} (mixed-network valid accuracy {best['score']:.4f}"
        f"{table}); wrote {path}", flush=True)
  return summary
