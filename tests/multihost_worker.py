"""One process of ``tests/test_multihost.py``: the quickstart:small supernet
trained for ``STEPS`` steps on this process's CPU devices, joined to the other
processes through ``jax.distributed`` when there are several.

  python tests/multihost_worker.py OUT PROCESS_ID NUM_PROCESSES PORT

Writes ``OUT/process<i>.json`` (the parameters' digest, the pool's scores) and,
from process 0, ``OUT/params.npz`` (every parameter leaf, in tree order).
"""

import json
import os
import pathlib
import sys

import numpy as np

STEPS = 2
REPO = pathlib.Path(__file__).resolve().parents[1]


def main(out: str, process_id: int, num_processes: int, port: int) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  if num_processes > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{port}", num_processes, process_id)
  sys.path.insert(0, str(REPO))
  from configs import quickstart  # pylint: disable=g-import-not-at-top
  from nao_jax.evaluators import supernet
  from nao_jax.models import supernet as supernet_lib
  from nao_jax.training import loop

  config = quickstart.get_config("small")
  # One batch for all devices of every process count the test compares.
  config.supernet.batch_size = 64
  evaluator = supernet.build(config)
  archs = evaluator.space.sample(np.random.default_rng(0), 4)
  evaluator.train_steps(supernet_lib.arch_arrays(evaluator.space, archs), STEPS)
  params = evaluator.host_state().params
  record = {"digest": loop.parameter_digest(params), "step": evaluator.step,
            "scores": evaluator.score(archs).tolist()}
  (pathlib.Path(out) / f"process{jax.process_index()}.json").write_text(json.dumps(record))
  if jax.process_index() == 0:
    np.savez(os.path.join(out, "params.npz"), *[np.asarray(x) for x in jax.tree.leaves(params)])


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
