"""Benchmark of the NAO controller: training speed, generation latency, NAS-Bench-201 quality.

Command (CPU, about 5 minutes; --quick about 2):
  python benchmarks/controller.py [--quick] [--table ../shared/data/nasbench201/nb201_acc.npz]

(a) training throughput at the reference defaults (nasnet ws5, NAO-WS controller,
    600-arch pool, batch 100) and the extrapolated seconds per reference round
    (1000 epochs over 600 archs);
(b) latency of one step-size pass (encode + gradient + masked greedy decode) for
    100 seeds, and of generating 300 new archs from the top-100 of the pool;
(c) NAS-Bench-201 quality (score c10v_valid_200): Kendall tau and pairwise accuracy
    of predictors trained on 100 / 300 / 1000 random cells, tested on 2000 others,
    the reconstruction rate on the training pool, and for comparison a ridge
    regression on one-hot ops and the GCN predictor of ``strategies.gcn``.
Prints a table and writes benchmarks/results/controller.md (machine, command, load, date).
The PyTorch reference on the 2-core CPU machine: 1,120 samples/s, 35 ms per pass.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # Run as a script from a checkout without installing.

from nao_jax import controller  # noqa: E402
from nao_jax import spaces  # noqa: E402
from nao_jax.controller import optimize  # noqa: E402
from nao_jax.strategies import gcn  # noqa: E402
from nao_jax.strategies import surrogate  # noqa: E402

DEFAULT_TABLE = REPO.parent / "shared" / "data" / "nasbench201" / "nb201_acc.npz"
REFERENCE_SAMPLES_PER_S = 1120.0
REFERENCE_PASS_MS = 35.0


def timed(function, repeats: int) -> float:
  """Median wall seconds of ``function()`` (its result blocked on) over ``repeats`` calls."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(function())
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def training_speed(quick: bool) -> dict[str, float]:
  """(a) samples/s of ``fit`` at the reference defaults on a 600-arch nasnet pool."""
  space = spaces.get("nasnet")
  state = controller.init(jax.random.key(0), space, controller.default_config("nasnet"))
  rng = np.random.default_rng(0)
  tokens = np.stack([space.encode(a) for a in space.sample(rng, 600)])
  scores = rng.random(600)
  controller.fit(state, tokens, scores, jax.random.key(1), epochs=1)  # Compile.
  epochs = 5 if quick else 20
  start = time.perf_counter()
  state, _ = controller.fit(state, tokens, scores, jax.random.key(2), epochs=epochs)
  seconds = time.perf_counter() - start
  samples_per_s = epochs * 600 / seconds
  return {"samples_per_s": samples_per_s, "seconds_per_round": 1000 * 600 / samples_per_s,
          "epochs_timed": epochs, "state": state, "tokens": tokens, "space": space}


def generation_latency(state, space, tokens, quick: bool) -> dict[str, float]:
  """(b) one step-size pass for 100 seeds; generating 300 new archs from the top 100."""
  seeds = jnp.asarray(tokens[:100])
  step_and_decode = lambda: optimize.step_and_decode(state, seeds, jnp.float32(3.0))
  step_and_decode()  # Compile.
  pass_s = timed(step_and_decode, 10 if quick else 30)
  seen = {space.arch_hash(space.decode(t)) for t in tokens}
  start = time.perf_counter()
  new_tokens, _ = controller.generate(state, space, tokens[:100], 300, seen)
  generate_s = time.perf_counter() - start
  return {"pass_ms": 1000 * pass_s, "generate_s": generate_s, "generated": len(new_tokens)}


def ridge_tau(train_ops, train_y, test_ops, test_y, alpha=1.0) -> float:
  """Kendall tau of a ridge regression on one-hot ops (the baseline of the issue)."""
  def features(ops):
    one_hot = np.eye(5)[ops].reshape(len(ops), -1)
    return np.concatenate([one_hot, np.ones((len(ops), 1))], axis=1)
  x = features(train_ops)
  weights = np.linalg.solve(x.T @ x + alpha * np.eye(x.shape[1]), x.T @ train_y)
  return float(controller.metrics.kendall_tau(features(test_ops) @ weights, test_y))


def gcn_tau(space, train_archs, train_y, test_archs, test_y, seed: int) -> float:
  """Kendall tau of the GCN predictor (``strategies.gcn`` with its defaults) fitted
  on the training cells as that strategy fits it."""
  c = gcn.default_config()
  model = gcn.GCN(c.layers, c.hidden, c.head, c.dropout)
  low, high = train_y.min(), train_y.max()
  params = surrogate.fit(model, gcn.graphs(space, train_archs), (train_y - low) / (high - low),
                         jax.random.key(seed), epochs=c.epochs, batch_size=c.batch_size,
                         learning_rate=c.learning_rate, weight_decay=c.weight_decay)
  predicted = surrogate.predict(model, params, gcn.graphs(space, test_archs))[0]
  return float(controller.metrics.kendall_tau(predicted, test_y))


def nb201_quality(table_path: pathlib.Path, quick: bool) -> list[dict[str, float]]:
  """(c) predictor and decoder quality on NAS-Bench-201 (score c10v_valid_200)."""
  table = np.load(table_path, allow_pickle=False)
  space = spaces.get("nb201")
  ops = table["ops"].astype(np.int64)
  tokens_all = ops + 1  # Token = op id + 1 (nb201 space); checked on a few rows below.
  for i in range(0, len(ops), 3907):
    assert np.array_equal(space.encode(space.from_string(str(table["arch_str"][i]))),
                          tokens_all[i])
  scores_all = table["c10v_valid_200"]
  order = np.random.default_rng(0).permutation(len(scores_all))
  test, rest = order[:2000], order[2000:]
  config = controller.default_config("nb201")
  rows = []
  for size in (100, 300) if quick else (100, 300, 1000):
    train = rest[:size]
    state = controller.init(jax.random.key(size), space, config)
    start = time.perf_counter()
    state, _ = controller.fit(state, tokens_all[train], scores_all[train], jax.random.key(1))
    fit_s = time.perf_counter() - start
    preds = controller.predict(state, tokens_all[test])
    decoded = controller.reconstruct(state, tokens_all[train])
    rows.append({
        "train_archs": size,
        "kendall_tau": float(controller.metrics.kendall_tau(preds, scores_all[test])),
        "pairwise_acc": float(controller.metrics.pairwise_accuracy(preds, scores_all[test])),
        "reconstruction": float(controller.metrics.reconstruction_rate(decoded,
                                                                       tokens_all[train])),
        "ridge_tau": ridge_tau(ops[train], scores_all[train], ops[test], scores_all[test]),
        "gcn_tau": gcn_tau(space, [space.decode(t) for t in tokens_all[train]],
                           scores_all[train], [space.decode(t) for t in tokens_all[test]],
                           scores_all[test], size),
        "fit_s": fit_s})
  return rows, config


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="fewer repeats, NB201 sizes 100/300")
  parser.add_argument("--table", type=pathlib.Path, default=DEFAULT_TABLE,
                      help="NAS-Bench-201 table (.npz with arch_str, ops, c10v_valid_200)")
  parser.add_argument("--output", type=pathlib.Path,
                      default=REPO / "benchmarks" / "results" / "controller.md")
  args = parser.parse_args(argv)
  if not args.table.exists():
    parser.error(f"--table {args.table} does not exist; pass the path of nb201_acc.npz.")
  load_before = os.getloadavg()
  started = time.perf_counter()
  speed = training_speed(args.quick)
  latency = generation_latency(speed["state"], speed["space"], speed["tokens"], args.quick)
  quality, nb201_config = nb201_quality(args.table, args.quick)
  load_after = os.getloadavg()

  command = "python benchmarks/controller.py " + " ".join(sys.argv[1:] if argv is None else argv)
  lines = [
      "# Controller benchmark", "",
      f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
      f"- command: `{command.strip()}` ({time.perf_counter() - started:.0f} s in all)",
      f"- machine: {platform.node()}, {platform.machine()}, {os.cpu_count()} CPUs, "
      f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.devices()[0].device_kind})",
      f"- load average before / after: {load_before[0]:.2f} / {load_after[0]:.2f} "
      "(the CPU is shared with other jobs: higher load means pessimistic speeds)", "",
      "## (a) training and (b) generation, reference defaults (nasnet ws5, NAO-WS controller)",
      "", "| figure | nao_jax | PyTorch reference | speed-up |", "|---|---|---|---|",
      f"| training samples/s (batch 100, 600-arch pool, {speed['epochs_timed']} epochs timed) | "
      f"{speed['samples_per_s']:,.0f} | {REFERENCE_SAMPLES_PER_S:,.0f} | "
      f"{speed['samples_per_s'] / REFERENCE_SAMPLES_PER_S:.2f}x |",
      f"| seconds per round (1000 epochs x 600 archs, extrapolated) | "
      f"{speed['seconds_per_round']:,.0f} | {600_000 / REFERENCE_SAMPLES_PER_S:,.0f} at "
      f"{REFERENCE_SAMPLES_PER_S:,.0f}/s (the issue quotes 1,028 measured) | |",
      f"| one step-size pass, 100 seeds (median) | {latency['pass_ms']:.1f} ms | "
      f"{REFERENCE_PASS_MS:.0f} ms | {REFERENCE_PASS_MS / latency['pass_ms']:.2f}x |",
      f"| generate 300 new archs from the top 100 ({latency['generated']} found) | "
      f"{latency['generate_s']:.2f} s | | |", "",
      "## (c) NAS-Bench-201 quality (c10v_valid_200, tested on 2000 held-out cells)", "",
      f"Controller: `default_config('nb201')`: target transform "
      f"`{nb201_config.train.target_transform}`, {nb201_config.train.epochs} epochs, "
      f"embedding {nb201_config.encoder.embedding_size}, hidden {nb201_config.encoder.hidden_size}"
      f", MLP {nb201_config.predictor.layers}x{nb201_config.predictor.width}.", "",
      "| train archs | Kendall tau | pairwise acc | reconstruction (train pool) | "
      "ridge one-hot tau | GCN tau | fit s |", "|---|---|---|---|---|---|---|",
  ]
  for row in quality:
    lines.append(f"| {row['train_archs']} | {row['kendall_tau']:.3f} | {row['pairwise_acc']:.3f} "
                 f"| {row['reconstruction']:.3f} | {row['ridge_tau']:.3f} | {row['gcn_tau']:.3f} "
                 f"| {row['fit_s']:.1f} |")
  lines += ["", "Targets: >= 2x the reference speed; Kendall tau >= 0.60 @300 and >= 0.72 @1000; "
            "reconstruction >= 0.99."]
  text = "\n".join(lines) + "\n"
  print(text)
  args.output.parent.mkdir(parents=True, exist_ok=True)
  args.output.write_text(text)
  print(f"wrote {args.output}")


if __name__ == "__main__":
  main()
