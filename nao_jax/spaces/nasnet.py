"""NAO's CNN cell space (reference §1.1-1.4a).

An arch is a normal and a reduction cell. A cell has ``nodes`` (B) nodes;
node ``i`` (0-based) adds two branches ``op1(state[in1]) + op2(state[in2])``
whose inputs are one of the ``i + 2`` earlier states: 0 = output of cell k-2
(``s0``), 1 = output of cell k-1 (``s1``), ``2 + j`` = node ``j`` (``nj``). The
cell output concatenates the *loose ends*, the states no node reads.

Tokens: 2 per branch, ``[in1 + 1, op1 + B + 2, in2 + 1, op2 + B + 2]`` per node,
normal cell then reduction cell, so ``length = 2 * B * 4`` and
``vocab = 1 + (B + 1) + |ops|``. For B = 5 and the ``ws5`` op set this is the
reference's 40-token, 12-word scheme exactly (inputs 1..6, ops 7..11).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from typing import Any, NamedTuple, Sequence

import numpy as np

from nao_jax.spaces import base


@dataclasses.dataclass(frozen=True)
class OpSet:
  """A named list of cell operations.

  Attributes:
    name: registry name (``ws5`` or ``nao11``).
    ops: op names; the index is the op id used in tokens and arch objects.
    reference_offset: id of ``ops[0]`` in the PyTorch reference's integer
      strings (NAO's 11 ops are stored there as ids 5..15).
  """
  name: str
  ops: tuple[str, ...]
  reference_offset: int


OP_SETS = {
    # NAO-WS (reference §1.2): separable convs; avg pool excludes padding.
    "ws5": OpSet("ws5", ("sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3",
                         "max_pool_3x3", "identity"), reference_offset=0),
    # NAO (reference §1.2): dense convs; avg pools include zero padding and
    # the 2x2 pools zero-pad right/bottom.
    "nao11": OpSet("nao11", ("identity", "conv_1x1", "conv_3x3",
                             "conv_1x3_3x1", "conv_1x7_7x1", "max_pool_2x2",
                             "max_pool_3x3", "max_pool_5x5", "avg_pool_2x2",
                             "avg_pool_3x3", "avg_pool_5x5"),
                   reference_offset=5),
}

CELL_TYPES = ("normal", "reduction")


class Node(NamedTuple):
  """One node: ``op1(state[input1]) + op2(state[input2])`` (op ids)."""
  input1: int
  op1: int
  input2: int
  op2: int


@dataclasses.dataclass(frozen=True)
class NasnetArch:
  """A normal and a reduction cell, each a tuple of ``Node``s."""
  normal: tuple[Node, ...]
  reduction: tuple[Node, ...]

  def cell(self, cell_type: str) -> tuple[Node, ...]:
    return getattr(self, cell_type)


def loose_ends(nodes: Sequence[Node]) -> tuple[int, ...]:
  """State indices (0, 1 = cell inputs, 2+j = node j) that no node reads."""
  used = {i for node in nodes for i in (node.input1, node.input2)}
  return tuple(i for i in range(len(nodes) + 2) if i not in used)


def state_name(index: int) -> str:
  """0 -> 's0', 1 -> 's1', 2 + j -> 'nj'."""
  return f"s{index}" if index < 2 else f"n{index - 2}"


def _parse_state(name: str, where: str) -> int:
  match = re.fullmatch(r"([sn])(\d+)", name)
  if not match:
    raise ValueError(f"{where}: bad state name {name!r}; use s0, s1, n0, n1, ...")
  index = int(match.group(2))
  return index if match.group(1) == "s" else index + 2


_NODE_RE = re.compile(r"n(\d+)=(\w+)\((\w+)\)\+(\w+)\((\w+)\)")


class NasnetSpace(base.SearchSpace[NasnetArch]):
  """The NAO / NAO-WS CNN cell space; see the module docstring."""

  def __init__(self, nodes: int = 5, ops: str = "ws5"):
    if not isinstance(nodes, int) or nodes < 1:
      raise ValueError(f"nasnet: 'nodes' must be a positive integer, got {nodes!r}.")
    self.name = "nasnet"
    self.nodes = nodes
    self.op_set = OP_SETS[ops] if ops in OP_SETS else None
    if self.op_set is None:
      raise ValueError(f"nasnet: unknown op set 'ops'={ops!r}; choose one of {list(OP_SETS)}.")
    self.num_inputs = nodes + 1  # Node B-1 may read states 0..B.
    self.op_token_offset = 1 + self.num_inputs
    self.vocab_size = self.op_token_offset + len(self.op_set.ops)
    sizes, offsets = [], []
    for _ in CELL_TYPES:
      for i in range(nodes):
        for _ in range(2):
          sizes += [i + 2, len(self.op_set.ops)]
          offsets += [1, self.op_token_offset]
    self.sizes = np.array(sizes, dtype=np.int64)
    self.offsets = np.array(offsets, dtype=np.int64)

  @property
  def ops(self) -> tuple[str, ...]:
    return self.op_set.ops

  def signature(self) -> str:
    return f"nasnet(nodes={self.nodes},ops={self.op_set.name})"

  # ---- fields -------------------------------------------------------------

  def describe_position(self, position: int) -> str:
    cell, rest = divmod(position, 4 * self.nodes)
    node, slot = divmod(rest, 4)
    field = "input" if slot % 2 == 0 else "op"
    return f"{CELL_TYPES[cell]} cell, node {node}, branch {slot // 2 + 1} {field}"

  def to_values(self, arch: NasnetArch) -> np.ndarray:
    return np.array([v for cell in (arch.normal, arch.reduction)
                     for node in cell for v in node], dtype=np.int64)

  def from_values(self, values: Sequence[int]) -> NasnetArch:
    values = [int(v) for v in values]
    per_cell = 4 * self.nodes
    cells = [tuple(Node(*values[c * per_cell + 4 * i: c * per_cell + 4 * i + 4])
                   for i in range(self.nodes)) for c in range(2)]
    return NasnetArch(normal=cells[0], reduction=cells[1])

  def check(self, arch: Any) -> NasnetArch:
    if not isinstance(arch, NasnetArch):
      raise ValueError(f"nasnet: expected a NasnetArch, got {type(arch).__name__}.")
    num_ops = len(self.op_set.ops)
    for cell_type in CELL_TYPES:
      cell = arch.cell(cell_type)
      if len(cell) != self.nodes:
        raise ValueError(
            f"nasnet {cell_type} cell: has {len(cell)} nodes, this space has {self.nodes}.")
      for i, node in enumerate(cell):
        if len(node) != 4:
          raise ValueError(f"nasnet {cell_type} cell, node {i}: needs 4 fields "
                           f"(input1, op1, input2, op2), got {node!r}.")
        for branch in range(2):
          where = f"nasnet {cell_type} cell, node {i}, branch {branch + 1}"
          state = node[2 * branch]
          base.check_int(state, 0, 10**9, where, "input")
          if state > i + 1:
            raise ValueError(
                f"{where}: input {state} ({state_name(state)}) is not an earlier "
                f"state; node {i} may read 0..{i + 1} "
                f"({', '.join(state_name(s) for s in range(i + 2))}).")
          base.check_int(node[2 * branch + 1], 0, num_ops - 1, where,
                         f"op id (of {self.op_set.name})")
    return arch

  # ---- symmetries -----------------------------------------------------------

  def symmetry_permutations(self) -> np.ndarray:
    """All 2^(2B) ways of swapping the two branches of any subset of nodes.

    Row 0 is the identity. (The reference swaps exactly one random node per
    cell per fetch; drawing uniformly from the whole group covers every
    equivalent sequence instead.)
    """
    num_nodes = 2 * self.nodes
    perms = []
    for swaps in itertools.product((False, True), repeat=num_nodes):
      perm = np.arange(self.length, dtype=np.int32)
      for node, swap in enumerate(swaps):
        if swap:
          start = 4 * node
          perm[start:start + 4] = [start + 2, start + 3, start, start + 1]
      perms.append(perm)
    return np.stack(perms)

  def canonical(self, arch: NasnetArch) -> NasnetArch:
    """Branches of every node sorted by (input, op)."""
    arch = self.check(arch)

    def sort_node(node: Node) -> Node:
      first, second = sorted([(node.input1, node.op1), (node.input2, node.op2)])
      return Node(*first, *second)

    return NasnetArch(normal=tuple(map(sort_node, arch.normal)),
                      reduction=tuple(map(sort_node, arch.reduction)))

  # ---- readable forms -------------------------------------------------------

  def to_string(self, arch: NasnetArch) -> str:
    """E.g. ``normal[n0=sep_conv_3x3(s0)+identity(s1) n1=...] reduction[...]``."""
    arch = self.check(arch)
    parts = []
    for cell_type in CELL_TYPES:
      nodes = " ".join(
          f"n{i}={self.ops[n.op1]}({state_name(n.input1)})"
          f"+{self.ops[n.op2]}({state_name(n.input2)})"
          for i, n in enumerate(arch.cell(cell_type)))
      parts.append(f"{cell_type}[{nodes}]")
    return " ".join(parts)

  def from_string(self, text: str) -> NasnetArch:
    if not isinstance(text, str):
      raise ValueError(f"nasnet: expected a string, got {type(text).__name__}.")
    match = re.fullmatch(r"\s*normal\[(.*?)\]\s*reduction\[(.*?)\]\s*", text)
    if not match:
      raise ValueError(
          f"nasnet: cannot parse {text!r:.200}; expected "
          "'normal[n0=OP(STATE)+OP(STATE) ...] reduction[...]'.")
    cells = []
    for cell_type, body in zip(CELL_TYPES, match.groups()):
      nodes = []
      for i, item in enumerate(body.split()):
        where = f"nasnet {cell_type} cell, node {i}"
        node_match = _NODE_RE.fullmatch(item)
        if not node_match or int(node_match.group(1)) != i:
          raise ValueError(f"{where}: cannot parse {item!r}; expected 'n{i}=OP(STATE)+OP(STATE)'.")
        _, op1, in1, op2, in2 = node_match.groups()
        nodes.append(Node(
            _parse_state(in1, where), base.lookup_name("op", op1, self.ops, where),
            _parse_state(in2, where), base.lookup_name("op", op2, self.ops, where)))
      cells.append(tuple(nodes))
    return self.check(NasnetArch(normal=cells[0], reduction=cells[1]))

  def to_dict(self, arch: NasnetArch) -> dict[str, Any]:
    arch = self.check(arch)
    return {cell_type: [[n.input1, self.ops[n.op1], n.input2, self.ops[n.op2]]
                        for n in arch.cell(cell_type)]
            for cell_type in CELL_TYPES}

  def from_dict(self, data: dict[str, Any]) -> NasnetArch:
    unknown = set(data) - set(CELL_TYPES)
    if unknown:
      raise ValueError(f"nasnet: unknown JSON field(s) {sorted(unknown)}; expected {list(CELL_TYPES)}.")
    cells = []
    for cell_type in CELL_TYPES:
      if cell_type not in data:
        raise ValueError(f"nasnet: JSON field {cell_type!r} is missing.")
      cell = data[cell_type]
      if not isinstance(cell, list):
        raise ValueError(f"nasnet JSON field {cell_type!r}: expected a list of nodes.")
      nodes = []
      for i, node in enumerate(cell):
        where = f"nasnet {cell_type} cell, node {i}"
        if not isinstance(node, list) or len(node) != 4:
          raise ValueError(f"{where}: expected [input1, op1, input2, op2], got {node!r}.")
        nodes.append(Node(node[0], base.lookup_name("op", node[1], self.ops, where),
                          node[2], base.lookup_name("op", node[3], self.ops, where)))
      cells.append(tuple(nodes))
    return self.check(NasnetArch(normal=cells[0], reduction=cells[1]))

  # ---- the reference's integer strings ---------------------------------------

  def from_reference(self, text: str | Sequence[int]) -> NasnetArch:
    """Parses the reference's ``in1 op1 in2 op2 ...`` integers (normal cell then
    reduction cell, ``/`` optional between them), ops in reference ids."""
    ints = base.parse_reference_ints(text, self.length, "nasnet")
    offset = self.op_set.reference_offset
    values = [v - offset if p % 2 else v for p, v in enumerate(ints)]
    return self.check(self.from_values(values))

  def to_reference(self, arch: NasnetArch) -> str:
    """Inverse of ``from_reference``: ``'<normal ints> / <reduction ints>'``."""
    values = self.to_values(self.check(arch))
    offset = self.op_set.reference_offset
    ints = [v + offset if p % 2 else v for p, v in enumerate(values)]
    half = self.length // 2
    return " ".join(map(str, ints[:half])) + " / " + " ".join(map(str, ints[half:]))
