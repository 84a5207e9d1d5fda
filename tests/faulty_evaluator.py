"""A NAS-Bench-201 evaluator that fails on purpose, for the executor tests.

Importing this module registers ``faulty``: the nb201 table, except for the
archs (official strings) that ``config.evaluator`` lists in

* ``crash_once``: the first trial of the arch kills its own process (SIGKILL),
  a retry succeeds (a marker file in ``markers`` remembers the first try);
* ``crash_always``: every trial of it kills its process;
* ``raise_error``: raises ``ValueError``;
* ``nan``: scores NaN.
"""

import os
import signal

from nao_jax import evaluators
from nao_jax.evaluators import tabular


class Faulty(tabular.Nb201Table):

  def __init__(self, settings):
    super().__init__(path=settings.path, seconds_per_query=settings.seconds_per_query)
    self.settings = settings

  def evaluate(self, archs):
    results = []
    for arch in archs:
      text, settings = self.space.to_string(arch), self.settings
      marker = os.path.join(settings.markers, self.space.arch_hash(arch))
      if text in settings.crash_always or (text in settings.crash_once
                                           and not os.path.exists(marker)):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
      if text in settings.raise_error:
        raise ValueError(f"{text} is not trainable here")
      evaluation = super().evaluate([arch])[0]
      if text in settings.nan:
        evaluation = evaluators.Evaluation(float("nan"), evaluation.report, evaluation.cost)
      results.append(evaluation)
    return results


evaluators.register("faulty", lambda config: Faulty(config.evaluator))
