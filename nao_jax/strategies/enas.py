"""ENAS (Pham et al., ICML 2018): REINFORCE over one shared-weight network.

The policy, its update and its state are ``reinforce``'s; what makes it ENAS is
the schedule in a pool search over the supernet (``replaces_pool``): every round
the policy's fresh samples become the whole pool, the shared weights train on
them (one drawn per step) up to the round's scoring epoch, each is scored on the
same validation images, and the policy takes one step per ``batch_per_step``
of them against the moving baseline, with an entropy bonus.

Settings of ENAS's micro search (``scripts/cifar10_micro_search.sh`` of the
authors' code): Adam at 0.0035, logits ``1.1 * tanh``, entropy weight 1e-4,
baseline decay 0.99, 10 samples per step; LSTM width 64. Deviations: ENAS
draws a new arch for every shared-weight step and 300 more for the controller
each epoch; here one set of ``search.pool_size`` samples serves both (set it
to the controller's 300 for CIFAR). ENAS softens op logits further (tanh
constant / 2.5), which needs per-position types this generic policy has not;
and ENAS rewards an arch with one validation minibatch, this with the fixed
validation images of the supernet evaluator.
"""

from __future__ import annotations

import ml_collections

from nao_jax.strategies import reinforce


def default_config() -> ml_collections.ConfigDict:
  config = reinforce.default_config()
  config.update(hidden_size=64, learning_rate=0.0035, ema_decay=0.99, entropy_weight=1e-4,
                round_size=10, batch_per_step=10, tanh_constant=1.1)
  return config


STRATEGY = reinforce.STRATEGY._replace(replaces_pool=True)
