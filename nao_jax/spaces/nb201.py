"""The NAS-Bench-201 cell: 4 nodes, 6 edges, 5 ops per edge (15,625 cells).

Edge order (as in the official string and ``nb201_acc.npz``'s ``ops`` array):
(0->1), (0->2), (1->2), (0->3), (1->3), (2->3). The official string is
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` where ``op~j`` inside the k-th group
is the edge from node j into node k + 1.

Tokens: one per edge, op id + 1 (vocab 6 with the start token 0, length 6).
Every edge choice is independent, so each of the 5^6 sequences is a distinct
row of the benchmark; ``canonical`` is the identity (functionally equivalent
cells are separate table rows with their own measured accuracies).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from nao_jax.spaces import base

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))  # (from, to), string order.


@dataclasses.dataclass(frozen=True)
class Nb201Arch:
  """Op id (index into ``OPS``) of each edge, in ``EDGES`` order."""
  ops: tuple[int, ...]


class Nb201Space(base.SearchSpace[Nb201Arch]):
  """NAS-Bench-201's cell space; see the module docstring."""

  def __init__(self):
    self.name = "nb201"
    self.ops = OPS
    self.vocab_size = 1 + len(OPS)
    self.sizes = np.full(len(EDGES), len(OPS), dtype=np.int64)
    self.offsets = np.ones(len(EDGES), dtype=np.int64)

  def describe_position(self, position: int) -> str:
    source, target = EDGES[position]
    return f"edge {position} (node {source} -> node {target}) op"

  def to_values(self, arch: Nb201Arch) -> np.ndarray:
    return np.array(arch.ops, dtype=np.int64)

  def from_values(self, values: Sequence[int]) -> Nb201Arch:
    return Nb201Arch(ops=tuple(int(v) for v in values))

  def check(self, arch: Any) -> Nb201Arch:
    if not isinstance(arch, Nb201Arch):
      raise ValueError(f"nb201: expected an Nb201Arch, got {type(arch).__name__}.")
    if len(arch.ops) != len(EDGES):
      raise ValueError(f"nb201: an arch has {len(EDGES)} edge ops, got {len(arch.ops)}.")
    for position, op in enumerate(arch.ops):
      base.check_int(op, 0, len(OPS) - 1, f"nb201 {self.describe_position(position)}", "op id")
    return arch

  def op_graph(self, arch: Nb201Arch) -> tuple[np.ndarray, np.ndarray]:
    """Ops as vertices (Wen et al. 2019's form of an edge-labelled cell): vertex 0
    is the cell input, 1..6 the edges in ``EDGES`` order, 7 the output; edge
    vertex (i -> j) feeds every edge vertex leaving node j, and the output if j = 3.
    Labels: input, output, then the 5 ops (``none`` included)."""
    arch = self.check(arch)
    size = len(EDGES) + 2
    adjacency = np.zeros((size, size), np.float32)
    for vertex, (source, target) in enumerate(EDGES, start=1):
      if source == 0:
        adjacency[0, vertex] = 1.0
      for later, (next_source, _) in enumerate(EDGES, start=1):
        if next_source == target:
          adjacency[vertex, later] = 1.0
      if target == 3:
        adjacency[vertex, size - 1] = 1.0
    labels = np.zeros((size, 2 + len(OPS)), np.float32)
    labels[0, 0] = labels[-1, 1] = 1.0
    labels[np.arange(1, size - 1), 2 + np.asarray(arch.ops)] = 1.0
    return adjacency, labels

  def path_encoding(self, arch: Nb201Arch) -> np.ndarray:
    """float32 ``[4 + 4**2 + 4**3]``: the cell's 4 node-0-to-node-3 routes, each
    as its sequence of ops; a route through ``none`` carries nothing and is left
    out, so the alphabet is the other 4 ops (index: the sequence in base 4,
    after the 4**1 + ... entries of shorter sequences)."""
    arch = self.check(arch)
    alphabet = len(OPS) - 1
    encoding = np.zeros(sum(alphabet ** n for n in (1, 2, 3)), np.float32)
    edge_op = {edge: arch.ops[i] for i, edge in enumerate(EDGES)}
    for route in ((0, 3), (0, 1, 3), (0, 2, 3), (0, 1, 2, 3)):
      ops = [edge_op[(a, b)] for a, b in zip(route, route[1:])]
      if 0 in ops:  # OPS[0] is "none".
        continue
      shorter = sum(alphabet ** n for n in range(1, len(ops)))
      digits = 0
      for op in ops:
        digits = digits * alphabet + (op - 1)
      encoding[shorter + digits] = 1.0
    return encoding

  def to_string(self, arch: Nb201Arch) -> str:
    """The official NAS-Bench-201 string."""
    arch = self.check(arch)
    groups, position = [], 0
    for target in range(1, 4):
      groups.append("|" + "|".join(
          f"{OPS[arch.ops[position + source]]}~{source}" for source in range(target)) + "|")
      position += target
    return "+".join(groups)

  def from_string(self, text: str) -> Nb201Arch:
    if not isinstance(text, str):
      raise ValueError(f"nb201: expected a string, got {type(text).__name__}.")
    expected = "expected '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'"
    groups = text.strip().split("+")
    if len(groups) != 3:
      raise ValueError(f"nb201: cannot parse {text!r:.200}: needs 3 '+'-separated groups; {expected}.")
    ops = []
    for target, group in enumerate(groups, start=1):
      if not (group.startswith("|") and group.endswith("|")):
        raise ValueError(f"nb201: group {target} {group!r} must start and end with '|'; {expected}.")
      items = group[1:-1].split("|")
      if len(items) != target:
        raise ValueError(f"nb201: group {target} {group!r} needs {target} edges; {expected}.")
      for source, item in enumerate(items):
        where = f"nb201 edge (node {source} -> node {target})"
        name, _, index = item.partition("~")
        if index != str(source):
          raise ValueError(f"{where}: {item!r} must end with '~{source}'.")
        ops.append(base.lookup_name("op", name, OPS, where))
    return Nb201Arch(ops=tuple(ops))

  def to_dict(self, arch: Nb201Arch) -> dict[str, Any]:
    return {"arch_str": self.to_string(arch)}

  def from_dict(self, data: dict[str, Any]) -> Nb201Arch:
    if set(data) != {"arch_str"}:
      raise ValueError(f"nb201: JSON needs exactly the field 'arch_str', got {sorted(data)}.")
    return self.from_string(data["arch_str"])
