"""The NAO controller: encoder–predictor–decoder and the gradient step on the embedding.

Public API (all scores returned are on the controller's scale: in (0, 1), higher = better)::

  from nao_jax import controller
  config = controller.default_config("nasnet")        # ml_collections section, every field
  state = controller.init(key, space, config)         # ControllerState (flax TrainState)
  state, metrics = controller.fit(state, tokens, raw_scores, key, epochs=None, maximize=True)
  preds = controller.predict(state, tokens)           # float32 [N]
  decoded = controller.reconstruct(state, tokens)     # int32 [N, L], greedy masked decode
  new_tokens, new_preds = controller.generate(
      state, space, seed_tokens, num_new, seen_hashes, max_step_size=None)

* ``tokens`` are int ``[N, L]`` from ``space.encode``; ``raw_scores`` the measured
  metric; ``maximize=False`` for error rates / perplexities.
* ``fit`` transforms the scores (``train.target_transform``: minmax | rank |
  standardize), pads the pool to a capacity bucket and runs all epochs as one
  compiled call (no retrace across rounds, pool sizes within a bucket, or epochs).
* ``generate`` de-duplicates by ``space.arch_hash`` (canonical form) against
  ``seen_hashes`` (every arch ever evaluated) and returns at most ``num_new``
  archs with the predictor's score of each new arch.
* ``state`` is a pytree (orbax-checkpointable): restore into ``init(...)``'s output.
* Pure building blocks for research code: ``model.Controller`` (linen; methods
  ``encode``, ``predict``, ``decode_greedy``), ``train.loss_fn``, ``train.train_step``,
  ``optimize.move_encoder_outputs``, ``optimize.step_and_decode`` and ``metrics``.
"""

from nao_jax.controller import metrics
from nao_jax.controller.config import Settings, default_config, settings_from_config
from nao_jax.controller.model import Controller
from nao_jax.controller.optimize import generate, predict, reconstruct, step_and_decode
from nao_jax.controller.train import (ControllerState, fit, init, num_params,
                                      transform_targets)

__all__ = [
    "metrics", "Settings", "default_config", "settings_from_config", "Controller",
    "generate", "predict", "reconstruct", "step_and_decode", "ControllerState", "fit", "init",
    "num_params", "transform_targets",
]
