"""The ``sample`` job: draw architectures from a search space and write them.

Writes ``workdir/archs.jsonl`` (one line per arch: index, hash, JSON, string,
tokens) and prints a summary of the space. Useful to make a seed pool and to
see what a space's settings produce.
"""

from __future__ import annotations

import json
import math
import os

from absl import logging
import ml_collections
import numpy as np

from nao_jax import atomic
from nao_jax import configuration
from nao_jax import spaces


def space_size(space: spaces.SearchSpace) -> float:
  """Number of token sequences (ordered, symmetric duplicates counted)."""
  return math.prod(float(s) for s in space.sizes)


def run(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Samples ``config.num_samples`` archs with ``config.seed`` into the workdir."""
  with configuration.section("space"):
    space = spaces.from_config(config.space)
  num_samples = configuration.positive_int(config, "num_samples")
  rng = np.random.default_rng(config.seed)
  archs = space.sample(rng, num_samples)
  path = atomic.write_jsonl(os.path.join(workdir, "archs.jsonl"), (
      {"index": index, "hash": space.arch_hash(arch), "arch": json.loads(space.to_json(arch)),
       "string": space.to_string(arch), "tokens": space.encode(arch).tolist()}
      for index, arch in enumerate(archs)))
  distinct = len({space.arch_hash(a) for a in archs})
  print(f"space {space.signature()}: {space.length} tokens, vocab {space.vocab_size}, "
        f"{space_size(space):.3g} sequences, {len(space.symmetry_permutations())} symmetries")
  for arch in archs[:3]:
    print(f"  {space.to_string(arch)}")
  print(f"wrote {len(archs)} archs ({distinct} distinct up to symmetry) to {path}")
  logging.info("sample job done: %s", path)
