"""The ``ptb`` job: final training of an ``rnn``-space cell on Penn Treebank.

``run(config, workdir)`` trains ``config.arch`` (a published name, e.g.
``NAO-PTB``) with the reference's recipe (``NAO/rnn/train.py``): SGD without
momentum, gradient norm clipped, weight decay; the window length drawn per step
(``ptb.window_plan``) with the learning rate scaled by ``length / bptt``; the
hidden state carried from window to window through an epoch; temporal activation
regularisation (``beta``) and activation regularisation (``alpha``). SGD
switches to averaged SGD (the average of the iterates since the switch is what
is evaluated) when the validation loss is worse than the best of all but the
last ``nonmono`` epochs, or after epoch ``asgd_epoch`` when that is set. The
parameters (the average, under ASGD) with the best validation perplexity are
kept and evaluated on the test stream at the end.

The train step runs data-parallel (``jax.pmap`` over the local devices, the
batch's rows split over them; on a multi-process run over every process's
devices, each process feeding its share of the rows, and the run ends by
checking that every process holds the same parameters); evaluation runs on one
device at ``eval_batch_size`` / ``test_batch_size`` rows. A checkpoint is
written after every epoch (and on SIGTERM): the state with the ASGD average,
the best parameters, the hidden state and the position in the epoch's window
plan, which is a function of (seed, epoch), so a resumed run repeats an
uninterrupted one exactly. TensorBoard scalars go to ``workdir/tb/train``;
``workdir/results.json`` records the perplexities at the end.
"""

from __future__ import annotations

import functools
import math
import os
import time
from typing import Any, Callable, NamedTuple

import flax
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from nao_jax import atomic
from nao_jax import checkpoint
from nao_jax import configuration
from nao_jax import progress as progress_lib
from nao_jax import tensorboard
from nao_jax.data import ptb
from nao_jax.models import rnn as rnn_model
from nao_jax.spaces import known
from nao_jax.spaces.rnn import RnnSpace
from nao_jax.training import loop
from nao_jax.training import preemption
from nao_jax.training import step as step_lib

AXIS = step_lib.AXIS


class RnnState(flax.struct.PyTreeNode):
  """What a train step changes (replicated over devices).

  Attributes:
    step: int32 scalar, steps done.
    params: the model's parameters.
    average: the mean of the parameters after each averaged-SGD step.
    count: int32 scalar, how many steps ``average`` holds (0 before the switch).
  """
  step: jnp.ndarray
  params: Any
  average: Any
  count: jnp.ndarray


class Hyper(NamedTuple):
  """Static settings of the train step: gradient norm bound, weight decay, and
  the weights of activation (``alpha``) and temporal activation (``beta``)
  regularisation."""
  clip_norm: float
  weight_decay: float
  alpha: float
  beta: float


def train_step(state: RnnState, hidden: jnp.ndarray, inputs: jnp.ndarray, targets: jnp.ndarray,
               length: jnp.ndarray, learning_rate: jnp.ndarray, averaging: jnp.ndarray,
               key: jax.Array, *, model: rnn_model.RnnLanguageModel,
               hyper: Hyper) -> tuple[RnnState, jnp.ndarray, dict[str, jnp.ndarray]]:
  """One SGD (or averaged SGD) step on this device's rows; must run in ``pmap`` over ``AXIS``.

  Args:
    state: the replicated state.
    hidden: float32 ``[b, H]``, this device's rows' hidden state.
    inputs, targets: int32 ``[b, T]``; positions ``>= length`` are padding.
    length: int32 scalar, the window's real length.
    learning_rate: float32 scalar, this step's rate (already scaled by length / bptt).
    averaging: int32 scalar, 1 once averaged SGD is on.
    key: the run's key; dropout uses ``fold_in(fold_in(key, step), device)``.
    model, hyper: static.
  Returns:
    ``(state, hidden [b, H], metrics)``: metrics ``loss`` (the mean word NLL) and
    ``l2_grads`` (before clipping), equal on every device.
  """
  steps = inputs.shape[1]
  mask = (jnp.arange(steps) < length).astype(jnp.float32)
  dropout_key = jax.random.fold_in(jax.random.fold_in(key, state.step),
                                   jax.lax.axis_index(AXIS))
  rows = inputs.shape[0]

  def loss_fn(params):
    logits, new_hidden, out = model.apply({"params": params}, inputs, hidden, mask, train=True,
                                          rngs={"dropout": dropout_key})
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    loss = jnp.sum(nll * mask) / (rows * length)
    width = out["raw"].shape[-1]
    activation = jnp.sum(jnp.square(out["dropped"]) * mask[:, None]) / (rows * length * width)
    change = jnp.square(out["raw"][:, 1:] - out["raw"][:, :-1]) * mask[1:, None]
    slowness = jnp.sum(change) / (rows * jnp.maximum(length - 1, 1) * width)
    return loss + hyper.alpha * activation + hyper.beta * slowness, (loss, new_hidden)

  grads, (loss, hidden) = jax.grad(loss_fn, has_aux=True)(state.params)
  grads = jax.lax.pmean(grads, AXIS)
  l2_grads = optax.tree.norm(grads)
  grads, _ = optax.clip_by_global_norm(hyper.clip_norm).update(grads, optax.EmptyState())
  params = jax.tree.map(lambda p, g: p - learning_rate * (g + hyper.weight_decay * p),
                        state.params, grads)
  count = state.count + averaging
  average = jax.tree.map(
      lambda a, p: jnp.where(averaging > 0, a + (p - a) / jnp.maximum(count, 1), a),
      state.average, params)
  new_state = RnnState(step=state.step + 1, params=params, average=average, count=count)
  return new_state, hidden, {"loss": jax.lax.pmean(loss, AXIS), "l2_grads": l2_grads}


def evaluate_stream(params: Any, inputs: jnp.ndarray, targets: jnp.ndarray, mask: jnp.ndarray,
                    *, model: rnn_model.RnnLanguageModel) -> tuple[jnp.ndarray, jnp.ndarray]:
  """``(summed NLL, word count)`` of a stream's windows (``ptb.eval_windows``:
  ``[W, B, T]`` inputs and targets, ``[W, T]`` mask), the hidden state carried
  from window to window from zeros."""
  def window(hidden, batch):
    x, y, m = batch
    logits, hidden, _ = model.apply({"params": params}, x, hidden, m)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return hidden, jnp.sum(nll * m)

  hidden = jnp.zeros((inputs.shape[1], model.hidden_size), jnp.float32)
  _, sums = jax.lax.scan(window, hidden, (inputs, targets, mask))
  return jnp.sum(sums), jnp.sum(mask) * inputs.shape[1]


@functools.lru_cache(maxsize=4)
def _compiled(model: rnn_model.RnnLanguageModel, hyper: Hyper,
              devices: tuple[Any, ...]) -> tuple[Callable, Callable]:
  train = jax.pmap(functools.partial(train_step, model=model, hyper=hyper), axis_name=AXIS,
                   devices=devices, in_axes=(0, 0, 0, 0, None, None, None, None),
                   donate_argnums=(0, 1))
  evaluate = jax.jit(functools.partial(evaluate_stream, model=model))
  return train, evaluate


def perplexity(evaluate: Callable, params: Any, rows: np.ndarray, bptt: int,
               device: Any) -> tuple[float, float]:
  """``(mean NLL, perplexity)`` of ``rows`` (int32 ``[batch, tokens]``) on ``device``."""
  inputs, targets, mask = ptb.eval_windows(rows, bptt)
  total, count = evaluate(jax.device_put(params, device), *jax.device_put((inputs, targets, mask),
                                                                          device))
  loss = float(total) / float(count)
  return loss, math.exp(loss)


def _space_arch(arch: str) -> tuple[RnnSpace, Any]:
  """``(space, cell)`` of a published rnn cell's name or of an rnn arch's JSON
  file (``space.to_json``, a search's ``best_arch.json``)."""
  names = [n for n in known.NAMES if isinstance(known.get(n)[0], RnnSpace)]
  try:
    space, cell = loop.resolve_arch(arch)
  except ValueError as e:
    raise configuration.ConfigError("arch", f"{e} Published rnn cells: {names}.") from None
  if not isinstance(space, RnnSpace):
    raise configuration.ConfigError("arch", f"{arch!r} is a {space.signature()} arch; the "
                                    f"ptb job trains rnn cells, e.g. {names}.")
  return space, cell


def _check(config: ml_collections.ConfigDict, num_devices: int) -> None:
  train, model = config.train, config.model
  configuration.check(config, [
      ("train.epochs", train.epochs >= 1, "must be >= 1"),
      ("train.batch_size", train.batch_size > 0 and train.batch_size % num_devices == 0,
       f"must be a positive multiple of the {num_devices} devices in use"),
      ("train.eval_batch_size", train.eval_batch_size >= 1, "must be >= 1"),
      ("train.test_batch_size", train.test_batch_size >= 1, "must be >= 1"),
      ("train.bptt", train.bptt >= 5, "must be >= 5 (the shortest window)"),
      ("train.max_seq_len_delta", train.max_seq_len_delta >= 0, "must be >= 0"),
      ("train.pad_multiple", train.pad_multiple >= 1, "must be >= 1"),
      ("train.learning_rate", train.learning_rate > 0, "must be > 0"),
      ("train.nonmono", train.nonmono >= 1, "must be >= 1"),
      ("train.asgd_epoch", train.asgd_epoch >= 0, "must be >= 0 (0: the non-monotone trigger)"),
      ("train.dtype", train.dtype in loop.DTYPES, f"choose one of {list(loop.DTYPES)}"),
      ("model.hidden_size", model.hidden_size >= 1, "must be >= 1"),
  ] + [(f"model.{name}", 0 <= model[name] < 1, "must be in [0, 1)")
       for name in ("dropout", "dropout_h", "dropout_x", "dropout_i", "dropout_e",
                    "weight_dropout")])


def _switch_to_asgd(config: ml_collections.ConfigDict, epoch: int, history: list[float],
                    valid_loss: float | None) -> bool:
  """Whether SGD turns into averaged SGD after 0-based ``epoch``: at the fixed
  ``asgd_epoch``, else (with a validation stream) when ``valid_loss`` exceeds the
  best of ``history`` without its last ``nonmono`` entries."""
  if config.train.asgd_epoch:
    return epoch + 1 == config.train.asgd_epoch
  nonmono = config.train.nonmono
  return (valid_loss is not None and len(history) > nonmono
          and valid_loss > min(history[:-nonmono]))


def host_rows(rows: np.ndarray) -> np.ndarray:
  """This process's share ``[batch / processes, ...]`` of the global batch's ``rows``."""
  share = rows.shape[0] // jax.process_count()
  return rows[jax.process_index() * share:(jax.process_index() + 1) * share]


def global_hidden(hidden: jax.Array) -> np.ndarray:
  """The hidden state of every row of the global batch, ``[batch, H]``, on every host."""
  pieces = sorted(hidden.addressable_shards, key=lambda piece: piece.index[0].start or 0)
  local = np.concatenate([np.asarray(piece.data) for piece in pieces]).reshape(
      -1, hidden.shape[-1])
  if jax.process_count() == 1:
    return local
  return np.asarray(multihost_utils.process_allgather(local, tiled=True))


def shard(array: np.ndarray, devices: list[Any]) -> jax.Array:
  """``array`` ``[rows, ...]`` as ``[devices, rows / devices, ...]`` split over ``devices``,
  sharded as ``pmap``'s outputs are (``step.replicate``), so no second compilation."""
  sharding = jax.sharding.NamedSharding(jax.sharding.Mesh(np.asarray(devices), (AXIS,)),
                                        jax.sharding.PartitionSpec(AXIS))
  return jax.device_put(array.reshape(len(devices), -1, *array.shape[1:]), sharding)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains, evaluates and returns (and writes) the results record.

  SIGTERM saves a checkpoint and raises ``Preempted`` when run in the main thread.
  """
  devices = loop.train_devices(config)
  num_devices = len(devices) * jax.process_count()
  _check(config, num_devices)
  space, arch = _space_arch(config.arch)
  with configuration.section("data"):
    corpus = ptb.load(config.data)
  train_cfg = config.train
  rows = ptb.batchify(corpus.train, train_cfg.batch_size)
  if rows.shape[1] < train_cfg.bptt + 2:
    raise configuration.ConfigError(
        "train.batch_size", f"{train_cfg.batch_size} rows leave {rows.shape[1]} tokens per "
        f"row, fewer than bptt + 2 = {train_cfg.bptt + 2}.")
  local_rows = host_rows(rows)
  valid_rows = (ptb.batchify(corpus.valid, train_cfg.eval_batch_size)
                if corpus.valid is not None else None)
  test_rows = ptb.batchify(corpus.test, train_cfg.test_batch_size)
  model = rnn_model.RnnLanguageModel(
      arch=arch, space=space, vocab_size=len(corpus.vocab), **config.model.to_dict(),
      dtype=loop.DTYPES[train_cfg.dtype])
  hyper = Hyper(train_cfg.clip_norm, train_cfg.weight_decay, train_cfg.alpha, train_cfg.beta)
  key = jax.random.key(config.seed)
  tokens = jnp.zeros((1, 2), jnp.int32)
  params = jax.device_get(jax.jit(model.init)(jax.random.fold_in(key, 0), tokens,
                                              jnp.zeros((1, model.hidden_size)))["params"])
  zero = np.zeros((), np.int32)
  host = {"state": RnnState(step=zero, params=params, average=params, count=zero),
          "best": params, "hidden": np.zeros((train_cfg.batch_size, model.hidden_size),
                                             np.float32)}
  meta = {"epoch": 0, "window": 0, "history": [], "best_valid_loss": None, "asgd_epoch": None,
          "wall_time": 0.0}
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), config.ckpt.max_to_keep)
  if ckpt.latest_step() is not None:
    host, meta = ckpt.restore(host)
    print(f"resumed from checkpoint step {int(host['state'].step)} (epoch {meta['epoch'] + 1}, "
          f"window {meta['window']}) in {ckpt.directory}")
  state = step_lib.replicate(host["state"], devices)
  best = host["best"]
  hidden = shard(host_rows(np.asarray(host["hidden"])), devices)
  train_fn, eval_fn = _compiled(model, hyper, step_lib.pmap_devices(devices))
  step_key = jax.random.fold_in(key, 1)
  num_params = rnn_model.count_params(params)
  print(f"{config.arch}: {space.to_string(arch)}; {num_params:,} parameters, vocabulary "
        f"{len(corpus.vocab)}, {len(corpus.train):,} training tokens, {corpus.unknown:,} "
        "valid/test words read as <unk>")

  writer = tensorboard.writer(workdir, "train")
  preempted = preemption.SigtermFlag()
  started = time.time() - meta["wall_time"]
  bar = progress_lib.bar(train_cfg.epochs, "training", "epoch", meta["epoch"],
                         show=preempted.in_main)

  def save(hidden_rows: np.ndarray) -> None:
    meta["wall_time"] = time.time() - started
    host_state = step_lib.unreplicate(state)
    ckpt.save(int(host_state.step), {"state": host_state, "best": best, "hidden": hidden_rows},
              meta)

  try:
    for epoch in range(meta["epoch"], train_cfg.epochs):
      plan = ptb.window_plan(np.random.default_rng([config.seed, epoch]), rows.shape[1],
                             train_cfg.bptt, train_cfg.max_seq_len_delta)
      averaging = np.int32(meta["asgd_epoch"] is not None)
      losses, last_time = [], time.time()
      for window in range(meta["window"], len(plan)):
        start, length = plan[window]
        padded = min(-(-length // train_cfg.pad_multiple) * train_cfg.pad_multiple,
                     train_cfg.bptt + train_cfg.max_seq_len_delta)
        chunk = np.zeros((local_rows.shape[0], padded + 1), np.int32)
        chunk[:, :length + 1] = local_rows[:, start:start + length + 1]
        rate = np.float32(train_cfg.learning_rate * length / train_cfg.bptt)
        state, hidden, metrics = train_fn(state, hidden, shard(chunk[:, :-1], devices),
                                          shard(chunk[:, 1:], devices), np.int32(length), rate,
                                          averaging, step_key)
        losses.append(metrics)
        bar.update(1 / len(plan))
        done = window + 1
        if done % train_cfg.log_every_steps == 0 or done == len(plan) or preempted:
          _log(writer, losses, _step(state), epoch, done, len(plan), rate,
               train_cfg.batch_size * sum(plan[w][1] for w in range(done - len(losses), done))
               / (time.time() - last_time))
          losses, last_time = [], time.time()
        if preempted and done < len(plan):  # At an epoch's end, the epoch's checkpoint.
          meta.update(epoch=epoch, window=done)
          save(global_hidden(hidden))
          raise preemption.Preempted(_preempted_message(state, ckpt))
      host_state = step_lib.unreplicate(state)
      current = host_state.average if averaging else host_state.params
      valid_loss = None
      if valid_rows is not None:
        valid_loss, valid_ppl = perplexity(eval_fn, current, valid_rows, train_cfg.bptt,
                                           devices[0])
        print(f"epoch {epoch + 1}: valid perplexity {valid_ppl:.2f}"
              f"{' (averaged)' if averaging else ''}", flush=True)
        writer.scalars(int(host_state.step), {"valid/perplexity": valid_ppl,
                                              "valid/loss": valid_loss})
        if meta["best_valid_loss"] is None or valid_loss < meta["best_valid_loss"]:
          meta["best_valid_loss"], best = valid_loss, current
      else:
        best = current
      if not averaging:
        if _switch_to_asgd(config, epoch, meta["history"], valid_loss):
          meta["asgd_epoch"] = epoch + 1
          print(f"epoch {epoch + 1}: switching to averaged SGD", flush=True)
        if valid_loss is not None:
          meta["history"].append(valid_loss)
      meta.update(epoch=epoch + 1, window=0)
      hidden = shard(np.zeros((local_rows.shape[0], model.hidden_size), np.float32), devices)
      save(np.zeros((train_cfg.batch_size, model.hidden_size), np.float32))
      if preempted:
        raise preemption.Preempted(_preempted_message(state, ckpt))
    loop.check_processes_agree(state.params)
    test_loss, test_ppl = perplexity(eval_fn, best, test_rows, train_cfg.bptt, devices[0])
    writer.scalars(_step(state), {"test/perplexity": test_ppl})
  finally:
    preempted.restore()
    ckpt.close()
    writer.close()
    bar.close()
  best_valid = meta["best_valid_loss"]
  results = {
      "arch": config.arch, "arch_string": space.to_string(arch), "dataset": "ptb",
      "train_split": config.data.train_split, "epochs": train_cfg.epochs,
      "steps": _step(state), "params": num_params,
      "vocab_size": len(corpus.vocab), "best_valid_perplexity":
          math.exp(best_valid) if best_valid is not None else None,
      "test_perplexity": test_ppl, "test_loss": test_loss, "asgd_epoch": meta["asgd_epoch"],
      "wall_time_s": time.time() - started, "devices": num_devices,
      "device_kind": devices[0].device_kind,
  }
  atomic.write_json(os.path.join(workdir, "results.json"), results)  # Process 0 writes.
  print(f"test perplexity {test_ppl:.2f} (best valid {results['best_valid_perplexity']}); "
        f"{num_params:,} params; wrote {os.path.join(workdir, 'results.json')}")
  return results


def _step(state: RnnState) -> int:
  """The number of steps a replicated state has done."""
  return int(step_lib.unreplicate(state.step))


def _preempted_message(state: RnnState, ckpt: checkpoint.Checkpointer) -> str:
  return (f"SIGTERM at step {_step(state)}: saved a checkpoint in {ckpt.directory}; "
          "run the same command again to resume.")


def _log(writer, metrics, step, epoch, done, windows, rate, words_per_second) -> None:
  losses = np.array([float(m["loss"][0]) for m in metrics])
  if not np.all(np.isfinite(losses)):
    raise FloatingPointError(
        f"training loss is {losses[~np.isfinite(losses)][0]} near step {step} (epoch "
        f"{epoch + 1}); stopped without saving. Lower config.train.learning_rate.")
  loss = float(losses.mean())
  l2_grads = float(np.mean([float(m["l2_grads"][0]) for m in metrics]))
  print(f"epoch {epoch + 1} window {done}/{windows} step {step} loss {loss:.4f} "
        f"ppl {math.exp(min(loss, 50)):.2f} lr {float(rate):.3f} {words_per_second:,.0f} words/s",
        flush=True)
  writer.scalars(step, {"train/loss": loss, "train/perplexity": math.exp(min(loss, 50)),
                        "train/l2_grads": l2_grads, "train/learning_rate": float(rate),
                        "train/words_per_second": words_per_second})
