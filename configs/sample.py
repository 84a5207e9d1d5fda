"""Sample architectures from a search space (a quick look at a space, or a seed pool).

Command (about 5 s on a laptop CPU):
  python -m nao_jax.main --config=configs/sample.py --workdir=/tmp/nao_sample
  python -m nao_jax.main --config=configs/sample.py:nb201 --workdir=/tmp/nao_sample
  python -m nao_jax.main --config=configs/sample.py:rnn --workdir=/tmp/nao_sample \
      --config.space.activations=nao_ws

Expected: prints the space's size (nasnet/ws5: 40 tokens, vocab 12, 2.6e25
sequences) and writes ``archs.jsonl`` with ``num_samples`` architectures.
"""

import ml_collections

# Settings of each space, the defaults of reference §1.
SPACE_DEFAULTS = {
    "nasnet": dict(name="nasnet", nodes=5, ops="ws5"),
    "nb201": dict(name="nb201"),
    "rnn": dict(name="rnn", nodes=11, activations="nao"),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """``arg`` picks the space: ``nasnet`` (default), ``nb201`` or ``rnn``."""
  space = arg or "nasnet"
  if space not in SPACE_DEFAULTS:
    raise ValueError(f"configs/sample.py:{space}: choose one of {sorted(SPACE_DEFAULTS)}.")
  config = ml_collections.ConfigDict()
  config.job = "sample"
  config.seed = 0
  config.num_samples = 10
  config.space = SPACE_DEFAULTS[space]
  return config
