"""Architecture search on NAS-Bench-201 (CIFAR-10) with a tabular evaluator.

Command (NAO by default; 100 evaluations take about 25 s of CPU, 1-1.5 minutes on
a busy 2-core machine; it finds the optimum, index 6111, at evaluation 43):
  python -m nao_jax.main --config=configs/nb201.py --workdir=/tmp/nb201_nao
  python -m nao_jax.main --config=configs/nb201.py --workdir=/tmp/nb201_evo \
      --config.strategy=evolution --config.budget=150

Kill it at any time and run the same command again: it resumes and ends with
exactly the result of an uninterrupted run.

Searches on ``c10v_valid_200`` (CIFAR-10 valid accuracy, 200 epochs) and
reports ``c10_test_200`` of the best architecture found; the optimum is
94.37 (arch index 6111). Search quality of every strategy, on seeds no setting
was tuned on: benchmarks/results/search_nb201_c10.md (on NAO's tuning seeds
0-99: nb201.md). Other columns: the 12-epoch
``c100_valid_12``/``c100_test_12`` or ``in16_valid_12``/``in16_test_12``.

``configs/nb201.py:small`` is the variant that tests run (budget 30);
``configs/nb201.py:reference`` keeps NAO's original candidate selection.
"""

import ml_collections

from nao_jax import strategies
from nao_jax.evaluators import executors

STRATEGY_NAMES = ("nao", "random", "evolution", "reinforce", "local", "bananas", "gcn")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """``arg``: None for the full search, ``small`` for the test variant,
  ``reference`` for NAO with the reference's candidate selection."""
  if arg not in (None, "small", "reference"):
    raise ValueError(f"configs/nb201.py:{arg}: choose no argument, 'small' or 'reference'.")
  config = ml_collections.ConfigDict()
  config.job = "search"
  config.seed = 0
  config.strategy = "nao"  # One of STRATEGY_NAMES.
  config.budget = 100  # Evaluations (table lookups).
  config.evaluator = dict(
      name="nb201",
      path="",  # Empty: nasbench201/nb201_acc.npz in $NAO_JAX_DATA, ./data, ~/.cache/nao_jax/data.
      search_metric="c10v_valid_200",
      report_metric="c10_test_200",
      seconds_per_query=0.0,  # Simulated training time per query (demos, kill tests).
  )
  # Trials at once: --config.executor.workers=4 (threads) or --config.executor.name=ray.
  config.executor = executors.default_config()
  config.nao = strategies.default_config("nao", space_name="nb201")
  for name in STRATEGY_NAMES[1:]:
    config[name] = strategies.default_config(name)

  if arg == "reference":
    # NAO's own selection (reference §5-6): the first unseen archs decoded from
    # the top-100, no predictor ranking of candidates, no local candidates,
    # after 20 random archs (the reference's pool of 600 in 1,000, scaled down),
    # the predictor on the embedding.
    config.nao.initial_pool = 20
    config.nao.candidates_per_round = 0
    config.nao.neighbours_of_top = 0
    config.nao.controller.train.epochs = 300
    config.nao.controller.predictor.input = "embedding"  # The reference's predictor input.
  if arg == "small":
    config.budget = 30
    config.nao.new_per_round = 5
    config.nao.candidates_per_round = 20
    config.nao.max_step_size = 10
    config.nao.controller.train.epochs = 20
  return config
