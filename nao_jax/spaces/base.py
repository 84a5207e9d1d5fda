"""The SearchSpace protocol shared by every space (pure numpy, no JAX).

A space turns architectures into fixed-length token sequences and back. Every
position ``p`` of a sequence holds one *field* of the architecture (an input
index, an op, an activation...) whose value ``v`` lies in ``[0, sizes[p])`` and
is written as the token ``v + offsets[p]``. Token 0 is reserved for the
decoder's start-of-sequence symbol and never appears inside a sequence.

Because each position is independent given its range, one generic
implementation serves every space: the ``allowed`` mask, validation, uniform
sampling and single-field mutation. Subclasses only describe their fields and
convert between their architecture type and the flat list of field values.
"""

from __future__ import annotations

import abc
import hashlib
import json
from typing import Any, Generic, Sequence, TypeVar

import numpy as np

Arch = TypeVar("Arch")

SOS = 0  # Start-of-sequence token; never part of an architecture's sequence.


class SearchSpace(abc.ABC, Generic[Arch]):
  """Base class of all search spaces.

  Subclasses set ``name``, ``sizes`` and ``offsets`` (int arrays of shape
  ``[length]``), ``vocab_size`` and implement the conversions between their
  architecture type and field values, plus the human-readable forms.
  """

  name: str
  sizes: np.ndarray  # [length] number of values each position may take.
  offsets: np.ndarray  # [length] token of value 0 at each position.
  vocab_size: int

  # ---- what subclasses implement ------------------------------------------

  @abc.abstractmethod
  def to_values(self, arch: Arch) -> np.ndarray:
    """Returns the field values of a *validated* arch, int64 ``[length]``."""

  @abc.abstractmethod
  def from_values(self, values: Sequence[int]) -> Arch:
    """Builds the arch from field values already checked against ``sizes``."""

  @abc.abstractmethod
  def check(self, arch: Any) -> Arch:
    """Returns ``arch`` if it is a valid member of this space, else raises a
    ``ValueError`` naming the offending field and what it may hold."""

  @abc.abstractmethod
  def describe_position(self, position: int) -> str:
    """Names the field a token position holds, e.g. 'normal cell, node 2, branch 1 op'."""

  @abc.abstractmethod
  def to_string(self, arch: Arch) -> str:
    """Human-readable one-line form; ``from_string`` inverts it."""

  @abc.abstractmethod
  def from_string(self, text: str) -> Arch:
    """Parses ``to_string``'s form; raises ``ValueError`` on malformed text."""

  @abc.abstractmethod
  def to_dict(self, arch: Arch) -> dict[str, Any]:
    """JSON-serialisable dict (op names, not ids); ``from_dict`` inverts it."""

  @abc.abstractmethod
  def from_dict(self, data: dict[str, Any]) -> Arch:
    """Parses ``to_dict``'s form; raises ``ValueError`` naming the bad field."""

  def symmetry_permutations(self) -> np.ndarray:
    """Token permutations that map any sequence to an equivalent one.

    Returns int32 ``[num_symmetries, length]``; row 0 is the identity and
    ``tokens[perm]`` encodes the same network as ``tokens``. Being independent
    of the arch, this table lets a jitted controller draw a symmetry per
    sample per step. The default is the identity only.
    """
    return np.arange(self.length, dtype=np.int32)[None]

  def canonical(self, arch: Arch) -> Arch:
    """One representative of the arch's equivalence class (default: itself)."""
    return self.check(arch)

  # ---- encodings for predictors (gcn, bananas) ------------------------------

  def op_graph(self, arch: Arch) -> tuple[np.ndarray, np.ndarray]:
    """The arch as a labelled DAG for a graph network.

    Returns ``(adjacency, labels)``: float32 ``[V, V]`` with ``adjacency[i, j] = 1``
    for an edge i -> j, and float32 ``[V, F]`` one-hot node labels; V and F are
    the same for every arch of the space. The default is the chain input ->
    field 0 -> ... -> field L-1 -> output, each field labelled by its (position,
    value); spaces whose archs are cells override it with their op graph.
    """
    values = self.to_values(self.check(arch))
    size = self.length + 2
    adjacency = np.eye(size, k=1, dtype=np.float32)
    labels = np.zeros((size, 2 + int(self.sizes.sum())), np.float32)
    labels[0, 0] = labels[-1, 1] = 1.0
    starts = 2 + np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
    labels[np.arange(1, size - 1), starts + values] = 1.0
    return adjacency, labels

  def one_hot(self, arch: Arch) -> np.ndarray:
    """float32 ``[sum(sizes)]``: every field's value one-hot, concatenated."""
    values = self.to_values(self.check(arch))
    encoding = np.zeros(int(self.sizes.sum()), np.float32)
    encoding[np.concatenate([[0], np.cumsum(self.sizes)[:-1]]) + values] = 1.0
    return encoding

  def path_encoding(self, arch: Arch) -> np.ndarray | None:
    """BANANAS' path encoding (White et al. 2021): float32 ``[P]``, one entry per
    possible input-to-output sequence of ops, 1 where the arch has that path; None
    for spaces that do not define one (a chain's only path is the whole arch)."""
    del arch
    return None

  # ---- generic machinery --------------------------------------------------

  @property
  def length(self) -> int:
    """Number of tokens in a sequence."""
    return int(self.sizes.shape[0])

  @property
  def allowed(self) -> np.ndarray:
    """Boolean ``[length, vocab_size]``: the tokens valid at each position."""
    mask = np.zeros((self.length, self.vocab_size), dtype=bool)
    for position, (size, offset) in enumerate(zip(self.sizes, self.offsets)):
      mask[position, offset:offset + size] = True
    return mask

  def encode(self, arch: Arch) -> np.ndarray:
    """Arch -> int32 tokens ``[length]``; raises ``ValueError`` if invalid."""
    values = self.to_values(self.check(arch))
    return (values + self.offsets).astype(np.int32)

  def decode(self, tokens: Sequence[int] | np.ndarray) -> Arch:
    """Tokens ``[length]`` -> arch; raises ``ValueError`` naming the position."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or tokens.shape[0] != self.length:
      raise ValueError(
          f"{self.name}: expected a sequence of {self.length} tokens, got "
          f"shape {tokens.shape}.")
    if not np.issubdtype(tokens.dtype, np.integer):
      raise ValueError(
          f"{self.name}: tokens must be integers, got dtype {tokens.dtype}.")
    values = tokens.astype(np.int64) - self.offsets
    bad = np.flatnonzero((values < 0) | (values >= self.sizes))
    if bad.size:
      p = int(bad[0])
      raise ValueError(
          f"{self.name}: token {int(tokens[p])} at position {p} "
          f"({self.describe_position(p)}) is invalid; allowed tokens there are "
          f"{self.offsets[p]}..{self.offsets[p] + self.sizes[p] - 1}.")
    return self.from_values(values)

  def is_valid_tokens(self, tokens: Sequence[int] | np.ndarray) -> bool:
    """Whether ``tokens`` decode to an architecture of this space."""
    try:
      self.decode(tokens)
    except ValueError:
      return False
    return True

  def sample(self, rng: np.random.Generator, n: int) -> list[Arch]:
    """``n`` archs drawn uniformly (each field independently uniform)."""
    values = rng.integers(0, self.sizes, size=(n, self.length))
    return [self.from_values(row) for row in values]

  def mutate(self, rng: np.random.Generator, arch: Arch) -> Arch:
    """Changes exactly one field to a different valid value.

    The result is valid, differs from ``arch`` in exactly one token, and (for
    the symmetries of the spaces here) is never equivalent to ``arch``.
    """
    values = self.to_values(self.check(arch)).copy()
    mutable = np.flatnonzero(self.sizes > 1)
    position = int(rng.choice(mutable))
    shift = int(rng.integers(1, self.sizes[position]))
    values[position] = (values[position] + shift) % self.sizes[position]
    return self.from_values(values)

  def symmetries(self, arch: Arch) -> list[Arch]:
    """The distinct archs that ``symmetry_permutations`` map ``arch`` to.

    The first element is ``arch`` itself.
    """
    tokens = self.encode(arch)
    seen: dict[bytes, Arch] = {}
    for perm in self.symmetry_permutations():
      permuted = tokens[perm]
      seen.setdefault(permuted.tobytes(), self.decode(permuted))
    return list(seen.values())

  def arch_hash(self, arch: Arch) -> str:
    """Stable hex digest of the canonical form (same across runs and hosts)."""
    tokens = self.encode(self.canonical(arch)).astype("<i4")
    digest = hashlib.sha1(self.signature().encode() + tokens.tobytes())
    return digest.hexdigest()[:16]

  def signature(self) -> str:
    """A string identifying the space and its settings (for hashes, logs)."""
    return self.name

  def to_json(self, arch: Arch) -> str:
    """Arch -> compact JSON text (with the space's signature)."""
    return json.dumps({"space": self.signature(), **self.to_dict(self.check(arch))},
                      separators=(",", ":"))

  def from_json(self, text: str) -> Arch:
    """Inverse of ``to_json``; raises ``ValueError`` on bad JSON or fields."""
    try:
      data = json.loads(text)
    except (json.JSONDecodeError, TypeError) as e:
      raise ValueError(f"{self.name}: not valid JSON ({e}): {text!r:.200}") from None
    if not isinstance(data, dict):
      raise ValueError(f"{self.name}: JSON must be an object, got {type(data).__name__}.")
    space = data.pop("space", self.signature())
    if space != self.signature():
      raise ValueError(
          f"JSON field 'space' is {space!r} but this space is "
          f"{self.signature()!r}; load it with the matching space.")
    return self.from_dict(data)

  def __repr__(self) -> str:
    return f"<SearchSpace {self.signature()}: length={self.length}, vocab={self.vocab_size}>"


def lookup_name(kind: str, name: Any, names: Sequence[str], where: str) -> int:
  """Index of ``name`` in ``names`` or a ``ValueError`` listing the choices."""
  if isinstance(name, str) and name in names:
    return list(names).index(name)
  raise ValueError(f"{where}: unknown {kind} {name!r}; choose one of {list(names)}.")


def check_int(value: Any, low: int, high: int, where: str, meaning: str) -> int:
  """``value`` as int if it is an integer in ``[low, high]``, else ValueError."""
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"{where}: {meaning} must be an integer, got {value!r}.")
  if not low <= value <= high:
    raise ValueError(f"{where}: {meaning} {value} is out of range; allowed {low}..{high}.")
  return int(value)


def parse_reference_ints(text: str | Sequence[int], length: int, where: str) -> list[int]:
  """The ``length`` integers of a published arch string (``/`` may separate cells)."""
  if isinstance(text, str):
    try:
      ints = [int(t) for t in text.replace("/", " ").split()]
    except ValueError:
      raise ValueError(f"{where}: reference string must hold integers, got {text!r:.200}.") from None
  else:
    ints = [int(t) for t in text]
  if len(ints) != length:
    raise ValueError(f"{where}: a reference string has {length} integers, got {len(ints)}.")
  return ints
