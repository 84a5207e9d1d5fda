"""The ``train`` job: train one architecture data-parallel on all local devices
(on a multi-process run, on every process's devices: each process feeds its
share of the global batch, gradients are averaged over all of them).

``run(config, workdir)`` trains ``config.arch`` (a published name such as
``NAONet-A`` or the path of a ``best_arch.json``) on ``config.data`` with the
reference's recipe (§7.1), checkpointing every epoch (and on SIGTERM) under
``workdir/checkpoints`` and resuming from there exactly. Writes TensorBoard
events to ``workdir/tb/train`` and ``workdir/results.json`` at the end. The
test set is evaluated once, after the last epoch; nothing is chosen by it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any, Sequence

from absl import logging
from etils import epath
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np

from nao_jax import atomic
from nao_jax import checkpoint
from nao_jax import configuration
from nao_jax import data as data_lib
from nao_jax import models
from nao_jax import progress as progress_lib
from nao_jax import spaces
from nao_jax import tensorboard
from nao_jax.spaces import known
from nao_jax.training import preemption
from nao_jax.training import step as step_lib

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


# The spaces whose archs have a trainer, and the settings their signatures carry.
_SIGNATURE_SETTINGS = {"nasnet": {"nodes": int, "ops": str},
                       "rnn": {"nodes": int, "activations": str}}


def _space_of(signature: Any, where: str) -> spaces.SearchSpace:
  """The space a ``space`` field names: ``nasnet(nodes=N,ops=SET)``, ``nb201``,
  ``macro`` or ``rnn(nodes=N,activations=ORDER)``."""
  if signature in ("nb201", "macro"):
    return spaces.get(signature)
  text = str(signature)
  name, _, rest = text.partition("(")
  settings = dict(item.split("=", 1) for item in rest.removesuffix(")").split(",") if "=" in item)
  kinds = _SIGNATURE_SETTINGS.get(name)
  if kinds is None or set(settings) != set(kinds) or not text.endswith(")"):
    raise ValueError(f"{where}: space {signature!r} has no trainer; child training trains "
                     "nasnet(...), nb201 and macro architectures, the ptb job rnn(...) ones.")
  return spaces.get(name, **{k: kinds[k](v) for k, v in settings.items()})


def resolve_arch(arch: str) -> tuple[spaces.SearchSpace, Any]:
  """``(space, arch)`` of a published name (``known.NAMES``) or of a JSON file
  written by ``space.to_json`` or a search (``best_arch.json``, which may nest
  the arch under ``"arch"``); nasnet, nb201, macro and rnn archs."""
  if arch in known.NAMES:
    return known.get(arch)
  if not epath.Path(arch).is_file():
    raise ValueError(f"{arch!r} is neither a known architecture {list(known.NAMES)} nor an "
                     "existing best_arch.json file.")
  text = epath.Path(arch).read_text()
  try:
    record = json.loads(text)
  except json.JSONDecodeError:
    record = None
  return arch_from_record(record, arch)


def arch_from_record(record: Any, where: str) -> tuple[spaces.SearchSpace, Any]:
  """``(space, arch)`` of a JSON object as ``resolve_arch`` reads it; ``where``
  names it in errors."""
  if not isinstance(record, dict) or "space" not in record:
    raise ValueError(f"{where}: expected a JSON object with a 'space' field "
                     "(as written by space.to_json).")
  space = _space_of(record["space"], where)
  if isinstance(record.get("arch"), dict):  # A search job's best_arch.json nests the arch.
    record = {**record, **record["arch"]}
  # The fields of the space's own JSON form (a summary adds scores, hashes...).
  fields = json.loads(space.to_json(space.sample(np.random.default_rng(0), 1)[0]))
  return space, space.from_json(json.dumps({k: record[k] for k in fields if k in record}))


def section_config(config: ml_collections.ConfigDict, section: str,
                   arch_path: str) -> ml_collections.ConfigDict:
  """The trainer's config for ``arch_path`` from a job's ``config.<section>`` (its
  ``model``, ``augment``, ``train``, ``ckpt`` and data ``split``; the job's
  ``data`` and ``seed``): how a search job trains a child (re-ranking, the
  winner's training, the child-training evaluator)."""
  child = ml_collections.ConfigDict(config[section].to_dict())
  child.job, child.seed, child.arch = "train", config.seed, arch_path
  child.data = ml_collections.ConfigDict(config.data.to_dict())
  child.data.split = config[section].split
  return child


def _check(config: ml_collections.ConfigDict, num_devices: int) -> None:
  train = config.train
  checks = [
      ("train.epochs", train.epochs >= 1, "must be >= 1"),
      ("ckpt.every_steps", isinstance(config.ckpt.get("every_steps", 0), int)
       and config.ckpt.get("every_steps", 0) >= 0, "must be an integer >= 0 (0: epochs only)"),
      ("train.batch_size", train.batch_size % num_devices == 0 and train.batch_size > 0,
       f"must be a positive multiple of the {num_devices} devices in use"),
      ("train.eval_batch_size", train.eval_batch_size % num_devices == 0
       and train.eval_batch_size > 0, f"must be a positive multiple of {num_devices} devices"),
      ("train.learning_rate", train.learning_rate > 0, "must be > 0"),
      ("train.dtype", train.dtype in DTYPES, f"choose one of {list(DTYPES)}"),
      ("model.drop_path_keep_prob", 0 < config.model.drop_path_keep_prob <= 1, "must be in (0, 1]"),
      ("model.dropout_keep_prob", 0 < config.model.dropout_keep_prob <= 1, "must be in (0, 1]"),
      ("model.features", config.model.features >= 2 and config.model.features % 2 == 0,
       "must be an even number >= 2"),
      ("model.num_cells", config.model.num_cells >= 1, "must be >= 1"),
  ]
  configuration.check(config, checks)


def train_devices(config: ml_collections.ConfigDict) -> list[Any]:
  """The local devices ``config.train.num_devices`` asks for (0: all; all on a
  multi-process run)."""
  local = jax.local_devices()
  wanted = config.train.num_devices or len(local)
  if not 1 <= wanted <= len(local) or (jax.process_count() > 1 and wanted != len(local)):
    raise configuration.ConfigError(
        "train.num_devices", f"{config.train.num_devices} but this host has {len(local)} "
        f"devices; use 0 (all) or 1..{len(local)} (all on multi-host runs).")
  return local[:wanted]


def _host_batch(split: data_lib.Split, indices: np.ndarray, devices: int) -> dict[str, np.ndarray]:
  """This host's share of a global batch, ``[devices, per_device, ...]``."""
  share = len(indices) // jax.process_count()
  mine = indices[jax.process_index() * share:(jax.process_index() + 1) * share]
  batch = split.take(mine)
  return {"images": batch.images.reshape(devices, -1, *batch.images.shape[1:]),
          "labels": batch.labels.reshape(devices, -1)}


def evaluate(eval_fn, state, split: data_lib.Split, global_batch: int, devices: int) -> float:
  """Accuracy on ``split`` (padded to whole global batches, padding masked out)."""
  total = {"correct": 0.0, "count": 0.0}
  for start in range(0, len(split), global_batch):
    indices = np.arange(start, start + global_batch)
    mask = indices < len(split)
    batch = _host_batch(split, np.where(mask, indices, 0), devices)
    share = global_batch // jax.process_count()
    mine = mask[jax.process_index() * share:(jax.process_index() + 1) * share]
    batch["mask"] = mine.reshape(devices, -1)
    sums = eval_fn(state, batch)
    for k in total:
      total[k] += float(sums[k][0])
  return total["correct"] / total["count"]


def _epoch_order(seed: int, epoch: int, size: int) -> np.ndarray:
  """The training-set order of ``epoch``, a function of (seed, epoch) only."""
  return np.random.default_rng([seed, epoch]).permutation(size)


def run(config: ml_collections.ConfigDict, workdir: str,
        devices: Sequence[Any] | None = None) -> dict[str, Any]:
  """Trains and evaluates; returns (and writes) the results record.

  ``devices``: the local devices to train on (a trial of the child-training
  evaluator gets its own group); None: ``config.train.num_devices`` of them.
  SIGTERM saves a checkpoint and raises ``Preempted`` when run in the main thread.
  """
  if config.train.distributed and not jax.distributed.is_initialized():
    jax.distributed.initialize()
  devices = list(devices) if devices else train_devices(config)
  num_devices = len(devices) * jax.process_count()
  _check(config, num_devices)
  with configuration.section("arch"):
    space, arch = resolve_arch(config.arch)
  with configuration.section("data"):
    data = data_lib.load(config.data)
  steps_per_epoch = len(data.train) // config.train.batch_size
  if steps_per_epoch < 1:
    raise configuration.ConfigError(
        "train.batch_size", f"{config.train.batch_size} exceeds the {len(data.train)} "
        "training images.")
  model = models.from_space(
      space, arch, num_classes=data.num_classes, num_cells=config.model.num_cells,
      features=config.model.features, auxiliary=config.model.auxiliary,
      dropout_keep_prob=config.model.dropout_keep_prob,
      drop_path_keep_prob=config.model.drop_path_keep_prob, dtype=DTYPES[config.train.dtype])
  length = step_lib.Length(config.train.epochs, steps_per_epoch)
  tx = step_lib.make_optimizer(config.train.momentum, config.train.weight_decay,
                               config.train.clip_norm)
  hyper = step_lib.Hyper(mean=data.mean, std=data.std, pad=config.augment.pad,
                         cutout=config.augment.cutout, flip=config.augment.flip,
                         learning_rate=config.train.learning_rate,
                         aux_weight=config.model.aux_weight,
                         label_smoothing=config.train.label_smoothing)
  key = jax.random.key(config.seed)
  state = step_lib.create_train_state(model, tx, jax.random.fold_in(key, 0),
                                     data.train.images.shape[1])
  params, aux_params = models.count_params(state.params)

  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), config.ckpt.max_to_keep)
  # Besides every epoch's end: a SIGKILL loses at most this many steps (0: epochs only).
  every_steps = config.ckpt.get("every_steps", 0)
  host_state = jax.device_get(state)
  meta = {"best_valid_accuracy": None, "wall_time": 0.0}
  if ckpt.latest_step() is not None:
    host_state, meta = ckpt.restore(host_state)
    logging.info("resumed from step %d", int(host_state.step))
    print(f"resumed from checkpoint step {int(host_state.step)} in {ckpt.directory}")
  start_step = int(host_state.step)
  state = step_lib.replicate(host_state, devices)
  train_fn, eval_fn = step_lib.pmapped_steps(model, tx, hyper, length, devices)
  step_key = step_lib.replicate(jax.random.fold_in(key, 1), devices)

  writer = tensorboard.writer(workdir, "train")
  preempted = preemption.SigtermFlag()
  started = time.time() - meta["wall_time"]
  bar = progress_lib.bar(length.total_steps, "training", "step", start_step,
                         show=preempted.in_main)
  try:
    pending, last_log, last_time = [], start_step, time.time()
    for step in range(start_step, length.total_steps):
      epoch = step // steps_per_epoch
      order = _epoch_order(config.seed, epoch, len(data.train))
      first = (step % steps_per_epoch) * config.train.batch_size
      batch = _host_batch(data.train, order[first:first + config.train.batch_size], len(devices))
      state, metrics = train_fn(state, batch, step_key)
      pending.append(metrics)
      done = step + 1
      bar.update(1)
      epoch_end = done % steps_per_epoch == 0
      periodic = every_steps > 0 and done % every_steps == 0
      # A checkpoint follows a log, whose check keeps non-finite losses out of it.
      if done % config.train.log_every_steps == 0 or epoch_end or periodic or preempted:
        _check_finite(pending, last_log, done, ckpt)
        rate = (done - last_log) * config.train.batch_size / (time.time() - last_time)
        learning_rate = step_lib.cosine_learning_rate(config.train.learning_rate, step, length)
        _log(writer, pending, done, length.total_steps, epoch, float(learning_rate), rate)
        pending, last_log, last_time = [], done, time.time()
      if epoch_end:
        if data.valid is not None:
          valid = evaluate(eval_fn, state, data.valid, config.train.eval_batch_size, len(devices))
          best = meta["best_valid_accuracy"]
          meta["best_valid_accuracy"] = valid if best is None else max(best, valid)
          print(f"epoch {epoch + 1}: valid accuracy {valid:.4f}")
          writer.scalars(done, {"valid/accuracy": valid})
      if epoch_end or periodic or preempted:
        meta["wall_time"] = time.time() - started
        ckpt.save(done, step_lib.unreplicate(state), meta)
      if preempted:
        raise preemption.Preempted(f"SIGTERM at step {done}: saved checkpoint {done} in "
                        f"{ckpt.directory}; run the same command again to resume.")
    check_processes_agree(state.params)
    test = evaluate(eval_fn, state, data.test, config.train.eval_batch_size, len(devices))
    # Before the writer closes: one event file per run.
    writer.scalars(length.total_steps, {"test/accuracy": test})
  finally:
    preempted.restore()
    ckpt.close()
    writer.close()
    bar.close()
  results = {
      "arch": config.arch, "space": space.signature(), "arch_string": space.to_string(arch),
      "dataset": data.name, "split": config.data.split, "epochs": config.train.epochs,
      "steps": length.total_steps, "final_test_accuracy": test,
      "best_valid_accuracy": meta["best_valid_accuracy"], "params": params,
      "aux_params": aux_params, "wall_time_s": time.time() - started,
      "devices": num_devices, "device_kind": devices[0].device_kind,
  }
  atomic.write_json(os.path.join(workdir, "results.json"), results)  # Process 0 writes.
  print(f"final test accuracy {test:.4f} (best valid {results['best_valid_accuracy']}); "
        f"{params:,} params; wrote {os.path.join(workdir, 'results.json')}")
  return results


def parameter_digest(params: Any) -> str:
  """sha256 of every leaf's bytes (in tree order): equal digests, bitwise equal
  parameters."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(params):
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return digest.hexdigest()


def check_processes_agree(replicated_params: Any) -> None:
  """Raises ``RuntimeError`` unless every process of a multi-process run holds
  the same ``replicated_params`` (``step.replicate``d): a process whose gradients
  were not averaged with the others' diverges. Prints this process's digest; with
  one process there is nothing to compare and it does nothing."""
  if jax.process_count() == 1:
    return
  digest = parameter_digest(step_lib.unreplicate(replicated_params))
  print(f"process {jax.process_index()}/{jax.process_count()}: parameters sha256 {digest}",
        flush=True)
  as_bytes = np.frombuffer(bytes.fromhex(digest), np.uint8)
  every = multihost_utils.process_allgather(as_bytes)
  if not (every == as_bytes).all():
    raise RuntimeError("the processes' parameters differ after training: their gradients "
                       "were not averaged across hosts. Report this with the command.")


def _check_finite(pending: list[dict[str, Any]], first: int, last: int,
                  ckpt: checkpoint.Checkpointer) -> None:
  losses = np.array([float(m["loss"][0]) for m in pending])
  if not np.all(np.isfinite(losses)):
    bad = first + int(np.argmin(np.isfinite(losses)))
    raise FloatingPointError(
        f"training loss is {losses[bad - first]} at step {bad + 1} (steps {first + 1}..{last}); "
        f"stopped without saving. The last good checkpoint (step {ckpt.latest_step()}) is kept "
        f"in {ckpt.directory}. Lower config.train.learning_rate or use dtype float32.")


def _log(writer, pending, done, total_steps, epoch, learning_rate, rate) -> None:
  means = {k: float(np.mean([float(m[k][0]) for m in pending])) for k in pending[0]}
  print(f"step {done}/{total_steps} epoch {epoch + 1} [{100 * done / total_steps:5.1f}%] "
        f"loss {means['loss']:.4f} acc {means['accuracy']:.4f} lr {learning_rate:.5f} "
        f"{rate:.1f} images/s", flush=True)
  writer.scalars(done, {**{f"train/{name}": value for name, value in means.items()},
                       "train/learning_rate": learning_rate, "train/images_per_second": rate})

