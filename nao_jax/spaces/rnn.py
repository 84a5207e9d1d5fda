"""The PTB recurrent cell space of NAO (reference §1.3, §1.4c).

Node 0 mixes the input and the previous hidden state; node ``j`` (1..11)
reads one predecessor ``p`` in ``0..j-1`` and applies one activation:
``s_j = s_p + sigmoid(c) * (f(h) - s_p)`` with ``[c, h] = s_p W_j``. The cell
output is the mean of nodes 1..11.

Tokens: ``[p_1 + 1, a_1 + 12, ..., p_11 + 1, a_11 + 12]``: length 22,
vocab 16. The two code bases number the activations differently, so the
order is a constructor argument: ``nao`` = tanh, relu, identity, sigmoid and
``nao_ws`` = tanh, relu, sigmoid, identity.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, NamedTuple, Sequence

import numpy as np

from nao_jax.spaces import base

ACTIVATION_ORDERS = {
    "nao": ("tanh", "relu", "identity", "sigmoid"),
    "nao_ws": ("tanh", "relu", "sigmoid", "identity"),
}


class RnnNode(NamedTuple):
  """``activation(state[predecessor])`` (activation id in the space's order)."""
  predecessor: int
  activation: int


@dataclasses.dataclass(frozen=True)
class RnnArch:
  """Nodes 1..N of the recurrent cell (node 0 is fixed)."""
  nodes: tuple[RnnNode, ...]


_NODE_RE = re.compile(r"n(\d+)=(\w+)\(n(\d+)\)")


class RnnSpace(base.SearchSpace[RnnArch]):
  """The NAO / NAO-WS recurrent cell space; see the module docstring."""

  def __init__(self, nodes: int = 11, activations: str = "nao"):
    if not isinstance(nodes, int) or nodes < 1:
      raise ValueError(f"rnn: 'nodes' must be a positive integer, got {nodes!r}.")
    if activations not in ACTIVATION_ORDERS:
      raise ValueError(f"rnn: unknown 'activations'={activations!r}; choose one of "
                       f"{list(ACTIVATION_ORDERS)}.")
    self.name = "rnn"
    self.nodes = nodes
    self.activation_order = activations
    self.activations = ACTIVATION_ORDERS[activations]
    self.activation_token_offset = 1 + nodes
    self.vocab_size = self.activation_token_offset + len(self.activations)
    sizes, offsets = [], []
    for j in range(1, nodes + 1):
      sizes += [j, len(self.activations)]
      offsets += [1, self.activation_token_offset]
    self.sizes = np.array(sizes, dtype=np.int64)
    self.offsets = np.array(offsets, dtype=np.int64)

  def signature(self) -> str:
    return f"rnn(nodes={self.nodes},activations={self.activation_order})"

  def describe_position(self, position: int) -> str:
    node, slot = divmod(position, 2)
    return f"node {node + 1} {'predecessor' if slot == 0 else 'activation'}"

  def to_values(self, arch: RnnArch) -> np.ndarray:
    return np.array([v for node in arch.nodes for v in node], dtype=np.int64)

  def from_values(self, values: Sequence[int]) -> RnnArch:
    values = [int(v) for v in values]
    return RnnArch(nodes=tuple(RnnNode(values[2 * i], values[2 * i + 1])
                               for i in range(self.nodes)))

  def check(self, arch: Any) -> RnnArch:
    if not isinstance(arch, RnnArch):
      raise ValueError(f"rnn: expected an RnnArch, got {type(arch).__name__}.")
    if len(arch.nodes) != self.nodes:
      raise ValueError(f"rnn: an arch has {self.nodes} nodes, got {len(arch.nodes)}.")
    for j, node in enumerate(arch.nodes, start=1):
      where = f"rnn node {j}"
      if len(node) != 2:
        raise ValueError(f"{where}: needs (predecessor, activation), got {node!r}.")
      predecessor = base.check_int(node[0], 0, 10**9, where, "predecessor")
      if predecessor >= j:
        raise ValueError(f"{where}: predecessor {predecessor} is not an earlier node; "
                         f"node {j} may read 0..{j - 1}.")
      base.check_int(node[1], 0, len(self.activations) - 1, where,
                     f"activation id (order {self.activation_order})")
    return arch

  def to_string(self, arch: RnnArch) -> str:
    """E.g. ``n1=relu(n0) n2=tanh(n1) ...``."""
    arch = self.check(arch)
    return " ".join(f"n{j}={self.activations[node.activation]}(n{node.predecessor})"
                    for j, node in enumerate(arch.nodes, start=1))

  def from_string(self, text: str) -> RnnArch:
    if not isinstance(text, str):
      raise ValueError(f"rnn: expected a string, got {type(text).__name__}.")
    nodes = []
    for j, item in enumerate(text.split(), start=1):
      match = _NODE_RE.fullmatch(item)
      if not match or int(match.group(1)) != j:
        raise ValueError(f"rnn node {j}: cannot parse {item!r}; expected 'n{j}=ACTIVATION(nP)'.")
      activation = base.lookup_name("activation", match.group(2), self.activations, f"rnn node {j}")
      nodes.append(RnnNode(int(match.group(3)), activation))
    return self.check(RnnArch(nodes=tuple(nodes)))

  def to_dict(self, arch: RnnArch) -> dict[str, Any]:
    arch = self.check(arch)
    return {"nodes": [[node.predecessor, self.activations[node.activation]] for node in arch.nodes]}

  def from_dict(self, data: dict[str, Any]) -> RnnArch:
    if set(data) != {"nodes"} or not isinstance(data["nodes"], list):
      raise ValueError(f"rnn: JSON needs exactly the field 'nodes' (a list), got {sorted(data)}.")
    nodes = []
    for j, node in enumerate(data["nodes"], start=1):
      where = f"rnn node {j}"
      if not isinstance(node, list) or len(node) != 2:
        raise ValueError(f"{where}: expected [predecessor, activation], got {node!r}.")
      nodes.append(RnnNode(node[0], base.lookup_name("activation", node[1], self.activations, where)))
    return self.check(RnnArch(nodes=tuple(nodes)))

  def from_reference(self, text: str | Sequence[int]) -> RnnArch:
    """Parses the reference's ``p1 a1 p2 a2 ...`` integers (ids in this order)."""
    ints = base.parse_reference_ints(text, self.length, "rnn")
    return self.check(self.from_values(ints))

  def to_reference(self, arch: RnnArch) -> str:
    return " ".join(map(str, self.to_values(self.check(arch))))
