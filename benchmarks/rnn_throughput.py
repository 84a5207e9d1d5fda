"""Training tokens/s of the PTB final model and of the NAO-WS recurrent supernet, and
the projected times of the full final training and of the full search.

  PYTHONPATH=. python benchmarks/rnn_throughput.py [--steps=2] [--dtypes=float32,bfloat16]
      [--eval_windows=1]

Final model: the NAO-WS-PTB cell (11 nodes) at the reference's sizes (hidden 850,
batch 64, bptt 35, vocabulary 10,000), ``training.rnn_loop.train_step``. Supernet:
``evaluators.rnn_supernet`` at the reference's search sizes (hidden 300, batch
256, bptt 35), one train step per pool arch, and the scoring of ``SCORE_CHUNK``
archs on ``--eval_windows`` validation windows of 256 x 35 tokens (the full
validation stream is 8 of them; the projection scales to 8). Each figure is the
mean over ``--steps`` steps after one compiling step, on one device, with random
tokens.

FLOPs per token are counted (2 per multiply-add): the cell's node 0
``(2H) x (2H)`` and N nodes ``H x 2H``, the decoder ``H x V``; training counts 3x
the forward pass (the backward pass is two matrix products per forward one).
XLA's cost analysis counts a ``scan`` body once, not once per time step, so it
is not used. Projections: the reference's epochs (final: 4,000; search: 1,000
supernet epochs, the 1,000-arch pool scored 5 times, the top 5 re-ranked by 10
final-model epochs) over the 929,589 training words. Results:
benchmarks/results/ptb.md.
"""

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from nao_jax.data import ptb
from nao_jax.evaluators import rnn_supernet
from nao_jax.models import rnn
from nao_jax.models import rnn_supernet as supernet_model
from nao_jax.spaces import known
from nao_jax.training import loop
from nao_jax.training import rnn_loop
from nao_jax.training import step as step_lib

TRAIN_WORDS = 929_589
VALID_WINDOWS = 8  # The validation stream (73,760 words) in 256 rows of 35-token windows.
VOCAB = 10_000


def flops_per_token(hidden: int, nodes: int, vocab: int) -> tuple[float, float]:
  """``(forward, train)`` FLOPs per token of the cell and the tied decoder."""
  forward = 2 * (2 * hidden) * (2 * hidden) + nodes * 2 * hidden * (2 * hidden) + 2 * hidden * vocab
  return float(forward), 3.0 * forward


def final_rate(dtype: str, steps: int, hidden: int = 850, batch: int = 64,
               bptt: int = 35) -> float:
  """Training tokens/s of the NAO-WS-PTB final model on one device."""
  space, arch = known.get("NAO-WS-PTB")
  model = rnn.RnnLanguageModel(arch=arch, space=space, vocab_size=VOCAB, hidden_size=hidden,
                               dtype=loop.DTYPES[dtype])
  device = jax.local_devices()[:1]
  params = jax.device_get(jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 2), jnp.int32),
                                              jnp.zeros((1, hidden)))["params"])
  zero = np.zeros((), np.int32)
  state = step_lib.replicate(rnn_loop.RnnState(step=zero, params=params, average=params,
                                               count=zero), device)
  train = jax.pmap(functools.partial(rnn_loop.train_step, model=model,
                                     hyper=rnn_loop.Hyper(0.25, 8e-7, 0.0, 1e-3)),
                   axis_name=step_lib.AXIS, devices=device,
                   in_axes=(0, 0, 0, 0, None, None, None, None), donate_argnums=(0, 1))
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, VOCAB, (1, batch, bptt + 1)).astype(np.int32)
  hidden_state = step_lib.replicate(np.zeros((batch, hidden), np.float32), device)
  key = jax.random.key(0)
  args = (tokens[..., :-1], tokens[..., 1:], np.int32(bptt), np.float32(20.0), np.int32(0), key)
  state, hidden_state, metrics = train(state, hidden_state, *args)  # Compiles.
  jax.block_until_ready(metrics)
  started = time.perf_counter()
  for _ in range(steps):
    state, hidden_state, metrics = train(state, hidden_state, *args)
  jax.block_until_ready(metrics)
  return steps * batch * bptt / (time.perf_counter() - started)


def supernet_rates(dtype: str, steps: int, eval_windows: int) -> tuple[float, float]:
  """``(training tokens/s, scoring seconds per arch on the whole validation stream)``
  of the reference-size recurrent supernet on one device."""
  config = rnn_supernet.default_config()
  config.update(num_devices=1, dtype=dtype, eval_windows=eval_windows)
  rng = np.random.default_rng(0)
  rows = config.batch_size * (config.bptt * (steps + 2) + 2)
  valid = config.eval_batch_size * (config.bptt * eval_windows + 1)
  corpus = ptb.Corpus(tuple(f"w{i}" for i in range(VOCAB)),
                      rng.integers(0, VOCAB, rows).astype(np.int32),
                      rng.integers(0, VOCAB, valid).astype(np.int32), np.zeros(2, np.int32))
  space = known.get("NAO-WS-PTB")[0]
  evaluator = rnn_supernet.RnnSupernetEvaluator(space, corpus, config, seed=0)
  pool = supernet_model.arch_arrays(space, space.sample(rng, 16))
  jax.block_until_ready(evaluator.train_steps(pool, 1))  # Compiles.
  started = time.perf_counter()
  jax.block_until_ready(evaluator.train_steps(pool, steps))
  train = steps * config.batch_size * config.bptt / (time.perf_counter() - started)
  evaluator.score_arrays(pool[:rnn_supernet.SCORE_CHUNK])  # Compiles.
  started = time.perf_counter()
  evaluator.score_arrays(pool[:rnn_supernet.SCORE_CHUNK])
  per_arch = (time.perf_counter() - started) / rnn_supernet.SCORE_CHUNK
  return train, per_arch * VALID_WINDOWS / eval_windows


def _hours(seconds: float) -> str:
  return f"{seconds / 3600:,.1f} h" if seconds < 3600 * 48 else f"{seconds / 86400:,.0f} days"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=2, help="timed steps per figure")
  parser.add_argument("--dtypes", default="float32,bfloat16")
  parser.add_argument("--eval_windows", type=int, default=1,
                      help="validation windows timed for scoring (8: the whole stream)")
  args = parser.parse_args()
  device = jax.local_devices()[0]
  print(f"device: {device.device_kind} ({jax.device_count()} devices, one used)")
  final_fwd, final_train = flops_per_token(850, 11, VOCAB)
  super_fwd, super_train = flops_per_token(300, 11, VOCAB)
  print(f"FLOPs per token (counted): final model H=850 {final_fwd / 1e6:.1f} M forward, "
        f"{final_train / 1e6:.1f} M train; supernet H=300 {super_fwd / 1e6:.1f} M forward, "
        f"{super_train / 1e6:.1f} M train")
  print("| dtype | final train tok/s | final GFLOP/s | 4000 epochs | supernet train tok/s | "
        "supernet GFLOP/s | scoring s/arch | full search |")
  print("|---|---|---|---|---|---|---|---|")
  for dtype in args.dtypes.split(","):
    final = final_rate(dtype, args.steps)
    supernet, score = supernet_rates(dtype, args.steps, args.eval_windows)
    final_time = 4000 * TRAIN_WORDS / final
    search_time = (1000 * TRAIN_WORDS / supernet + 5 * 1000 * score
                   + 5 * 10 * TRAIN_WORDS / final)
    print(f"| {dtype} | {final:,.0f} | {final * final_train / 1e9:,.1f} | {_hours(final_time)} | "
          f"{supernet:,.0f} | {supernet * super_train / 1e9:,.1f} | {score:.2f} | "
          f"{_hours(search_time)} |", flush=True)


if __name__ == "__main__":
  main()
