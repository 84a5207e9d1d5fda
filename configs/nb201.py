"""Architecture search on NAS-Bench-201 (CIFAR-10) with a tabular evaluator.

Command (NAO by default; about 1 minute on a 2-core CPU for 100 evaluations):
  python -m nao_jax.main --config=configs/nb201.py --workdir=/tmp/nb201_nao
  python -m nao_jax.main --config=configs/nb201.py --workdir=/tmp/nb201_evo \
      --config.strategy=evolution --config.budget=150

Kill it at any time and run the same command again: it resumes and ends with
exactly the result of an uninterrupted run.

Searches on ``c10v_valid_200`` (CIFAR-10 valid accuracy, 200 epochs) and
reports ``c10_test_200`` of the best architecture found; the optimum is
94.37 (arch index 6111). Expected at 100 evaluations (mean over 100 seeds,
benchmarks/results/nb201.md): random search about 93.8, regularized
evolution about 94.1, NAO above 94.2. Other columns: the 12-epoch
``c100_valid_12``/``c100_test_12`` or ``in16_valid_12``/``in16_test_12``.

``configs/nb201.py:small`` is the variant that tests run (budget 30).
"""

import ml_collections

from nao_jax import strategies

STRATEGY_NAMES = ("random", "evolution", "reinforce")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """``arg``: None for the full search, ``small`` for the test variant."""
  if arg not in (None, "small"):
    raise ValueError(f"configs/nb201.py:{arg}: choose no argument or 'small'.")
  config = ml_collections.ConfigDict()
  config.job = "search"
  config.seed = 0
  config.strategy = "evolution"  # One of STRATEGY_NAMES.
  config.budget = 100  # Evaluations (table lookups).
  config.evaluator = dict(
      name="nb201",
      path="",  # Empty: ../shared/data/nasbench201/nb201_acc.npz beside the repo.
      search_metric="c10v_valid_200",
      report_metric="c10_test_200",
      seconds_per_query=0.0,  # Simulated training time per query (demos, kill tests).
  )
  for name in STRATEGY_NAMES:
    config[name] = strategies.default_config(name)

  if arg == "small":
    config.budget = 30
  return config
