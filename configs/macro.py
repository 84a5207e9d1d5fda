"""Architecture search on NAS-Bench-Macro (CIFAR-10, 8 layers x 3 choices, 6,561 nets).

Command (NAO by default; about a minute on a 2-core CPU):
  python -m nao_jax.main --config=configs/macro.py --workdir=/tmp/macro_nao
  python -m nao_jax.main --config=configs/macro.py --workdir=/tmp/macro_evo \
      --config.strategy=evolution

The benchmark has test accuracies of 3 training seeds only, so the search sees
seed ``evaluator.search_seed``'s accuracy and the mean of the other two is
reported. The best net by seed 0 is ``22212202`` (93.28; 93.05 on the other
seeds). ``configs/macro.py:small`` is the test variant (budget 20).
"""

import ml_collections

from nao_jax import strategies
from nao_jax.evaluators import executors

STRATEGY_NAMES = ("nao", "random", "evolution", "reinforce", "local", "bananas", "gcn")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """``arg``: None for the full search, ``small`` for the test variant."""
  if arg not in (None, "small"):
    raise ValueError(f"configs/macro.py:{arg}: choose no argument or 'small'.")
  config = ml_collections.ConfigDict()
  config.job = "search"
  config.seed = 0
  config.strategy = "nao"  # One of STRATEGY_NAMES.
  config.budget = 100  # Evaluations (table lookups).
  config.evaluator = dict(
      name="macro",
      path="",  # Empty: nasbench_macro/nas-bench-macro_cifar10.json in $NAO_JAX_DATA, ./data, ...
      search_seed=0,
      seconds_per_query=0.0,
  )
  # Trials at once: --config.executor.workers=4 (threads) or --config.executor.name=ray.
  config.executor = executors.default_config()
  config.nao = strategies.default_config("nao", space_name="macro")
  for name in STRATEGY_NAMES[1:]:
    config[name] = strategies.default_config(name)
  if arg == "small":
    config.budget = 20
    config.nao.new_per_round = 5
    config.nao.candidates_per_round = 10
    config.nao.max_step_size = 5
    config.nao.controller.train.epochs = 5
  return config
