"""The NAO-WS recurrent supernet evaluator on Penn Treebank (reference §6.4).

``RnnSupernetEvaluator(space, corpus, config, seed, eval_every)`` (registered as
``rnn_supernet``: ``build(config)``) trains the shared-weight language model of
``models.rnn_supernet`` (layout documented there) and scores ``rnn``-space
cells with it. It is a pool evaluator (``evaluators.base``), like the CNN
``supernet``: ``before_round`` trains the shared weights on the pool up to the
round's scoring epoch (one round per ``eval_every`` epochs, the last epoch
always scored), checkpointing every ``ckpt_every_steps`` steps inside the round.

* Training (the reference's ``model_search.train``): the training stream in
  ``batch_size`` rows, read in windows of ``bptt`` tokens (``int(bptt / 2)``
  with probability 0.05, drawn per window from ``(seed, epoch)``; the last window
  cut to what the rows hold) with the hidden state carried from window to
  window and reset to zero at each epoch's start; SGD at ``learning_rate *
  length / bptt``, gradient norm clipped at ``clip_norm``, weight decay, temporal
  activation regularisation ``beta``. Step ``t`` trains the arch
  ``pool[rng(seed, t) % len(pool)]``, so any run of steps is reproducible and a
  resumed run is exact (the checkpoint holds the weights, the hidden state and
  the position: epoch and window).
* Scoring (``score``): every arch is run, dropout off, over the *same* fixed
  windows: the validation stream in ``eval_batch_size`` rows, its first
  ``eval_windows`` windows of ``bptt`` tokens (0: all of them, the whole stream)
  with the hidden state carried from zeros. The reference scores each arch on
  one window drawn at random from the stream's first ``len / bptt`` tokens
  (§9 item 18); a fixed set of windows makes scores comparable across archs.
  The score is the negative log perplexity ``-mean NLL`` (higher is better);
  the report holds the perplexity ``exp(mean NLL)``.

Training is data-parallel: the train step is written once with
``axis_name='batch'`` and ``pmap``-ped over every device of every process (the
rows split over them, gradients and metrics averaged); each process holds its
share of the rows and of their hidden state, and a checkpoint gathers the whole
hidden state. Scoring has no collectives: every process shards the archs over
its own devices and ``lax.map``-s them on each, with the same weights, so all
processes reach the same scores. The arch is an argument: one compilation
serves every arch.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any, Callable, Iterator, Sequence

import flax
from flax import serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from nao_jax import configuration
from nao_jax import progress as progress_lib
from nao_jax import spaces
from nao_jax import tensorboard
from nao_jax.data import ptb
from nao_jax.evaluators.base import Evaluation, Evaluator
from nao_jax.models import rnn_supernet as model_lib
from nao_jax.spaces.rnn import RnnSpace
from nao_jax.training import rnn_loop
from nao_jax.training import step as step_lib
from nao_jax.training.loop import DTYPES  # The compute dtypes a config may name.

AXIS = step_lib.AXIS
SCORE_CHUNK = 8  # Archs per device and compiled scoring call.


def default_config() -> ml_collections.ConfigDict:
  """The reference's search settings (``NAO-WS/rnn/train_search.py`` and ``.sh``)."""
  return ml_collections.ConfigDict(dict(
      hidden_size=300,  # Embedding = hidden size (tied decoder).
      dropout=0.75, dropout_h=0.25, dropout_x=0.75, dropout_i=0.2, dropout_e=0.0,
      init_range=0.04,
      epochs=1000,
      batch_size=256,  # Rows of the training stream, split over the devices.
      bptt=35,
      learning_rate=0.25,  # Scaled by length / bptt per window; constant.
      clip_norm=10.0,
      weight_decay=5e-7,
      alpha=0.0,  # Activation regularisation.
      beta=1e-3,  # Temporal activation regularisation.
      eval_batch_size=256,  # Rows of the validation stream.
      eval_windows=0,  # Fixed validation windows each arch is scored on (0: all).
      num_devices=0,  # 0 = all local devices.
      ckpt_every_steps=500,  # Checkpoints inside a round (and one after every round).
      log_every_steps=50,
      dtype="float32",  # 'bfloat16': bf16 matrix products, float32 parameters.
  ))


class State(flax.struct.PyTreeNode):
  """The shared weights and their step count (replicated over devices)."""
  step: jnp.ndarray
  params: Any


def train_step(state: State, hidden: jnp.ndarray, inputs: jnp.ndarray, targets: jnp.ndarray,
               length: jnp.ndarray, learning_rate: jnp.ndarray, arch: jnp.ndarray,
               key: jax.Array, *, model: model_lib.RnnSupernet,
               hyper: rnn_loop.Hyper) -> tuple[State, jnp.ndarray, dict[str, jnp.ndarray]]:
  """One SGD step of ``arch`` on this device's rows; must run in ``pmap`` over ``AXIS``.

  Args:
    state: the replicated state.
    hidden: float32 ``[b, H]``, this device's rows' hidden state.
    inputs, targets: int32 ``[b, T]``; positions ``>= length`` are padding.
    length: int32 scalar, the window's real length.
    learning_rate: float32 scalar, already scaled by length / bptt.
    arch: int32 ``[N, 2]``.
    key: the run's key; dropout uses ``fold_in(fold_in(key, step), device)``.
  Returns:
    ``(state, hidden [b, H], metrics)``: ``loss`` (mean word NLL) and ``l2_grads``
    (before clipping), equal on every device.
  """
  steps, rows = inputs.shape[1], inputs.shape[0]
  mask = (jnp.arange(steps) < length).astype(jnp.float32)
  dropout_key = jax.random.fold_in(jax.random.fold_in(key, state.step),
                                   jax.lax.axis_index(AXIS))

  def loss_fn(params):
    logits, new_hidden, out = model.apply({"params": params}, inputs, hidden, arch, mask,
                                          train=True, rngs={"dropout": dropout_key})
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
  metrics = {"loss": jax.lax.pmean(loss, AXIS), "l2_grads": l2_grads}
  return State(step=state.step + 1, params=params), hidden, metrics


def score_archs(params: Any, inputs: jnp.ndarray, targets: jnp.ndarray, mask: jnp.ndarray,
                archs: jnp.ndarray, *, model: model_lib.RnnSupernet) -> jnp.ndarray:
  """Mean word NLL float32 ``[A]`` of each of ``archs`` int32 ``[A, N, 2]`` over the
  windows ``inputs``, ``targets`` int32 ``[W, B, T]`` (``mask`` float32 ``[W, T]``),
  the hidden state carried from zeros; one arch after the other (``lax.map``)."""
  def one(arch):
    def window(hidden, batch):
      x, y, m = batch
      logits, hidden, _ = model.apply({"params": params}, x, hidden, arch, m)
      nll = optax.softmax_cross_entropy_with_integer_labels(logits, y)
      return hidden, jnp.sum(nll * m)

    hidden = jnp.zeros((inputs.shape[1], model.hidden_size), jnp.float32)
    _, sums = jax.lax.scan(window, hidden, (inputs, targets, mask))
    return jnp.sum(sums) / (jnp.sum(mask) * inputs.shape[1])
  return jax.lax.map(one, archs)


def window_plan(rng: np.random.Generator, row_length: int, bptt: int) -> list[tuple[int, int]]:
  """``[(start, length)]`` of a search epoch's windows over rows of ``row_length``
  tokens: ``bptt`` long, ``int(bptt / 2)`` with probability 0.05, the last cut to
  what the rows hold (a window reads ``length`` inputs and their next tokens)."""
  windows, start = [], 0
  while start < row_length - 2:
    length = bptt if rng.random() < 0.95 else int(bptt / 2)
    length = min(length, row_length - 1 - start)
    windows.append((start, length))
    start += length
  return windows


class RnnSupernetEvaluator(Evaluator):
  """Trains the recurrent supernet and scores cells with it (see the module docstring).

  Attributes:
    space: the ``rnn`` space.
    state: the replicated ``State``.
    epoch, window: the training position (epochs done; windows done in the next).
    scoring_epochs: the epochs after which the pool is scored, one per round.
  """
  search_metric = "supernet_neg_log_perplexity"
  report_metric = "supernet_perplexity"
  cost_unit = "seconds"
  rescores_pool = True

  def __init__(self, space: RnnSpace, corpus: ptb.Corpus, config: ml_collections.ConfigDict,
               seed: int, eval_every: int | None = None):
    """``config``: a ``default_config()`` section; ``eval_every``: epochs between
    scorings of the pool (default: once, after the last epoch)."""
    if not isinstance(space, RnnSpace):
      raise ValueError(f"the rnn supernet searches the 'rnn' space, got {space.name!r}.")
    if corpus.valid is None:
      raise ValueError("the rnn supernet scores archs on a validation stream; set "
                       "config.data.valid_split or config.data.holdout_lines.")
    local = jax.local_devices()
    wanted = config.num_devices or len(local)
    processes = jax.process_count()
    train_rows = len(corpus.train) // max(config.batch_size, 1)
    valid_rows = len(corpus.valid) // max(config.eval_batch_size, 1)
    configuration.check(config, [
        ("num_devices", 1 <= wanted <= len(local) and (processes == 1 or wanted == len(local)),
         f"this host has {len(local)} devices; use 0 (all) or 1..{len(local)} (all on a "
         "multi-process run)"),
        ("batch_size", config.batch_size >= 1 and config.batch_size % (wanted * processes) == 0,
         f"must be a positive multiple of the {wanted * processes} devices"),
        ("bptt", config.bptt >= 2, "must be >= 2"),
        ("batch_size", train_rows >= config.bptt + 2,
         f"leaves {train_rows} training tokens per row, fewer than bptt + 2"),
        ("eval_batch_size", config.eval_batch_size >= 1 and valid_rows >= 2,
         f"must leave >= 2 validation tokens per row ({len(corpus.valid)} tokens)"),
        ("eval_windows", config.eval_windows >= 0, "must be >= 0 (0: all)"),
        ("epochs", config.epochs >= 1, "must be >= 1"),
        ("learning_rate", config.learning_rate > 0, "must be > 0"),
        ("ckpt_every_steps", config.ckpt_every_steps >= 1, "must be >= 1"),
        ("log_every_steps", config.log_every_steps >= 1, "must be >= 1"),
        ("dtype", config.dtype in DTYPES, f"choose one of {list(DTYPES)}"),
    ] + [(name, 0 <= config[name] < 1, "must be in [0, 1)")
         for name in ("dropout", "dropout_h", "dropout_x", "dropout_i", "dropout_e")])
    eval_every = eval_every or config.epochs
    self.scoring_epochs = [e for e in range(1, config.epochs + 1)
                           if e % eval_every == 0 or e == config.epochs]
    self.num_rounds = len(self.scoring_epochs)
    self.space, self.config, self.seed = space, config, int(seed)
    self.devices = local[:wanted]
    self.rows = rnn_loop.host_rows(ptb.batchify(corpus.train, config.batch_size))
    self.model = model_lib.RnnSupernet(
        space=space, vocab_size=len(corpus.vocab), hidden_size=config.hidden_size,
        dropout=config.dropout, dropout_h=config.dropout_h, dropout_x=config.dropout_x,
        dropout_i=config.dropout_i, dropout_e=config.dropout_e, init_range=config.init_range,
        dtype=DTYPES[config.dtype])
    hyper = rnn_loop.Hyper(config.clip_norm, config.weight_decay, config.alpha, config.beta)
    params = model_lib.init_params(self.model, seed)
    self.state = step_lib.replicate(State(step=np.zeros((), np.int32), params=params),
                                    self.devices)
    self.epoch, self.window = 0, 0
    self.hidden = self._shard(np.zeros((len(self.rows), config.hidden_size), np.float32))
    self._train = jax.pmap(functools.partial(train_step, model=self.model, hyper=hyper),
                           axis_name=AXIS, devices=step_lib.pmap_devices(self.devices),
                           in_axes=(0, 0, 0, 0, None, None, None, None), donate_argnums=(0, 1))
    # Scoring has no collectives: each device scores its share of the archs.
    self._score = jax.pmap(functools.partial(score_archs, model=self.model),
                           in_axes=(0, None, None, None, 0), devices=self.devices)
    self._key = jax.random.key(seed)
    inputs, targets, mask = ptb.eval_windows(ptb.batchify(corpus.valid, config.eval_batch_size),
                                             config.bptt)
    count = config.eval_windows or len(inputs)
    self.eval_data = tuple(jnp.asarray(a[:count]) for a in (inputs, targets, mask))
    self.eval_tokens = int(np.sum(mask[:count])) * config.eval_batch_size
    self._plan = (None, [])  # (epoch, its window plan).
    self._announced = False
    self._writer = tensorboard.Writer(None)  # Until the search gives one (``observe``).

  # ---- state ----------------------------------------------------------------

  @property
  def step(self) -> int:
    return int(self.state.step[0])

  def _shard(self, rows: np.ndarray) -> jax.Array:
    """``rows`` ``[R, ...]`` as ``[devices, R / devices, ...]`` (``rnn_loop.shard``)."""
    return rnn_loop.shard(rows, self.devices)

  def plan(self, epoch: int) -> list[tuple[int, int]]:
    """The windows of 0-based ``epoch`` (a function of ``(seed, epoch)``)."""
    if self._plan[0] != epoch:
      rng = np.random.default_rng([self.seed, 0, epoch])
      self._plan = (epoch, window_plan(rng, self.rows.shape[1], self.config.bptt))
    return self._plan[1]

  def arch_index(self, step: int, pool_size: int) -> int:
    """The pool index trained at global ``step`` (uniform, a function of (seed, step))."""
    return int(np.random.default_rng([self.seed, 1, step]).integers(pool_size))

  # ---- training -------------------------------------------------------------

  def train_steps(self, pool: np.ndarray, count: int) -> list[dict[str, Any]]:
    """Trains up to ``count`` steps on ``pool`` int32 ``[P, N, 2]``, stopping at the
    end of the current epoch; returns each step's metrics and word count."""
    bptt, plan, done = self.config.bptt, self.plan(self.epoch), []
    while len(done) < count and self.window < len(plan):
      start, length = plan[self.window]
      chunk = np.zeros((self.rows.shape[0], bptt + 1), np.int32)
      chunk[:, :length + 1] = self.rows[:, start:start + length + 1]
      rate = np.float32(self.config.learning_rate * length / bptt)
      arch = pool[self.arch_index(self.step, len(pool))]
      self.state, self.hidden, metrics = self._train(
          self.state, self.hidden, self._shard(chunk[:, :-1]), self._shard(chunk[:, 1:]),
          np.int32(length), rate, arch, self._key)
      done.append({**metrics, "words": length * self.config.batch_size})
      self.window += 1
    if self.window == len(plan):
      self.epoch, self.window = self.epoch + 1, 0
      self.hidden = self._shard(np.zeros((self.rows.shape[0], self.config.hidden_size),
                                         np.float32))
    return done

  def host_hidden(self) -> np.ndarray:
    """The hidden state of every training row ``[batch_size, H]`` on the host (every
    process's rows: a collective on a multi-process run)."""
    return rnn_loop.global_hidden(self.hidden)

  # ---- scoring --------------------------------------------------------------

  def score_arrays(self, archs: np.ndarray) -> np.ndarray:
    """Mean validation NLL float64 ``[A]`` of ``archs`` int32 ``[A, N, 2]`` (see
    ``score_archs``), in calls of ``SCORE_CHUNK`` archs per device, so one
    compiled function serves every ``A``."""
    n, d = len(archs), len(self.devices)
    per_call = SCORE_CHUNK * d
    calls = -(-n // per_call)
    padded = np.concatenate([archs, np.repeat(archs[:1], calls * per_call - n, 0)])
    losses = [self._score(self.state.params, *self.eval_data,
                          chunk.reshape(d, SCORE_CHUNK, *archs.shape[1:]))
              for chunk in np.split(padded, calls)]
    return np.asarray(jax.device_get(losses), np.float64).reshape(-1)[:n]

  def score(self, archs: Sequence[Any]) -> np.ndarray:
    """The negative log perplexity float64 ``[A]`` of ``archs`` (higher is better)."""
    return -self.score_arrays(model_lib.arch_arrays(self.space, archs))

  # ---- the evaluator protocol (evaluators.base) ------------------------------

  def evaluate(self, archs: Sequence[Any]) -> list[Evaluation]:
    """Every arch's negative log perplexity on the fixed validation windows with the
    current shared weights; report: the perplexity and the epoch; cost: seconds per arch."""
    started = time.time()
    scores = self.score(archs)
    seconds = (time.time() - started) / max(len(scores), 1)
    return [Evaluation(float(s), {self.report_metric: math.exp(min(-float(s), 50.0)),
                                  "epoch": self.epoch}, seconds)
            for s in scores]

  def evaluate_each(self, archs: Sequence[Any]) -> Iterator[tuple[int, Evaluation]]:
    yield from enumerate(self.evaluate(archs) if len(archs) else ())

  def before_round(self, round_: int, archs: Sequence[Any],
                   checkpoint: Callable[[], None]) -> None:
    """Trains the shared weights on ``archs`` (one drawn per step) to the end of
    epoch ``scoring_epochs[round_]``, logging every ``log_every_steps`` steps and at
    each epoch's end, and calls ``checkpoint()`` at every multiple of
    ``ckpt_every_steps`` inside the round."""
    pool = model_lib.arch_arrays(self.space, archs)
    last = self.scoring_epochs[round_]
    if self.epoch < last and not self._announced:
      params = sum(int(np.prod(x.shape[1:])) for x in jax.tree.leaves(self.state.params))
      print(f"rnn supernet (H={self.config.hidden_size}, {params:,} parameters) on "
            f"{len(self.devices)} {self.devices[0].device_kind}: {self.config.epochs} epochs of "
            f"~{len(self.plan(self.epoch))} steps, the pool scored after epochs "
            f"{self.scoring_epochs} on {self.eval_tokens:,} validation words; the first step "
            "includes compiling the train step", flush=True)
      self._announced = True
    every, log_every = self.config.ckpt_every_steps, self.config.log_every_steps
    started = time.time()
    bar = progress_lib.bar(last, f"rnn supernet to epoch {last}", "epoch", self.epoch)
    while self.epoch < last:
      begin, epoch, t0 = self.step, self.epoch, time.time()
      count = min(log_every - begin % log_every, every - begin % every)
      metrics = self.train_steps(pool, count)
      self._log(metrics, epoch, time.time() - t0, time.time() - started)
      bar.update(self.epoch - epoch)
      if self.step % every == 0 and self.epoch < last:
        checkpoint()
    bar.close()

  def _log(self, metrics: list[dict[str, Any]], epoch: int, seconds: float,
           elapsed: float) -> None:
    losses = np.array([float(m["loss"][0]) for m in metrics])
    if not np.all(np.isfinite(losses)):
      raise FloatingPointError(f"rnn supernet loss is {losses[~np.isfinite(losses)][0]} before "
                               f"step {self.step}; lower supernet.learning_rate.")
    loss = float(losses.mean())
    rate = sum(m["words"] for m in metrics) / max(seconds, 1e-9)
    l2_grads = float(np.mean([float(m["l2_grads"][0]) for m in metrics]))
    print(f"rnn supernet step {self.step} epoch {epoch + 1} loss {loss:.4f} ppl "
          f"{math.exp(min(loss, 50)):.2f} {rate:,.0f} words/s | {elapsed:.0f}s", flush=True)
    self._writer.scalars(self.step, {"supernet/loss": loss,
                                     "supernet/perplexity": math.exp(min(loss, 50)),
                                     "supernet/l2_grads": l2_grads,
                                     "supernet/words_per_second": rate})

  def observe(self, writer: tensorboard.Writer) -> None:
    self._writer = writer

  def save(self) -> tuple[dict[str, Any], dict[str, Any]]:
    arrays = {"state": serialization.to_state_dict(step_lib.unreplicate(self.state)),
              "hidden": self.host_hidden()}
    return arrays, {"step": self.step, "epoch": self.epoch, "window": self.window}

  def restore(self, arrays: dict[str, Any], record: dict[str, Any]) -> None:
    host = serialization.from_state_dict(step_lib.unreplicate(self.state), arrays["state"])
    self.state = step_lib.replicate(host, self.devices)
    if self.step != record.get("step"):
      raise ValueError(f"rnn supernet checkpoint: step {self.step} but its record says "
                       f"{record.get('step')}; the checkpoint is corrupt. Use a new workdir.")
    self.hidden = self._shard(rnn_loop.host_rows(np.asarray(arrays["hidden"], np.float32)))
    self.epoch, self.window = int(record["epoch"]), int(record["window"])
    print(f"resumed at rnn supernet step {self.step} (epoch {self.epoch + 1}, window "
          f"{self.window})", flush=True)


def build(config: ml_collections.ConfigDict) -> RnnSupernetEvaluator:
  """The evaluator of ``config.evaluator.name = 'rnn_supernet'``: the ``rnn`` space
  of ``config.space``, the corpus of ``config.data`` (``data.ptb.load``), the
  supernet of ``config.supernet``, the pool scored every ``config.search.eval_every``
  epochs."""
  configuration.check(config, [
      ("search.eval_every", isinstance(configuration.value(config, "search.eval_every"), int)
       and config.search.eval_every >= 1, "must be an integer >= 1 epoch")])
  with configuration.section("space"):
    space = spaces.get("rnn", **config.space)
  with configuration.section("data"):
    corpus = ptb.load(config.data)
  with configuration.section("supernet"):
    return RnnSupernetEvaluator(space, corpus, config.supernet, config.seed,
                                config.search.eval_every)
