"""Search spaces: round trips, validity, the mask, mutation, symmetries, errors."""

import json

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from nao_jax import spaces
from nao_jax.spaces import known
from nao_jax.spaces.nasnet import NasnetArch, Node

SPACES = {
    "nasnet_ws5": lambda: spaces.get("nasnet", nodes=5, ops="ws5"),
    "nasnet_nao11": lambda: spaces.get("nasnet", nodes=5, ops="nao11"),
    "nasnet_tiny": lambda: spaces.get("nasnet", nodes=2, ops="ws5"),
    "nb201": lambda: spaces.get("nb201"),
    "rnn_nao": lambda: spaces.get("rnn", activations="nao"),
    "rnn_nao_ws_tiny": lambda: spaces.get("rnn", nodes=4, activations="nao_ws"),
    "macro": lambda: spaces.get("macro"),
}
seeds = st.integers(0, 2**32 - 1)


@pytest.fixture(params=sorted(SPACES), scope="module")
def space(request):
  return SPACES[request.param]()


def test_reference_token_scheme_for_ws5():
  space = spaces.get("nasnet")
  assert (space.length, space.vocab_size) == (40, 12)
  # Inputs 1..i+2 at node i, ops 7..11 (reference §1.5).
  for t in range(40):
    allowed = np.flatnonzero(space.allowed[t])
    if t % 2 == 0:
      k = (t // 2 % 10) // 2 + 3
      np.testing.assert_array_equal(allowed, np.arange(1, k))
    else:
      np.testing.assert_array_equal(allowed, np.arange(7, 12))
  assert not space.allowed[:, 0].any()  # SOS never appears.


def test_sizes_of_the_spaces():
  per_cell = 720**2
  assert np.prod(spaces.get("nasnet").sizes.astype(float)) == pytest.approx(per_cell**2 * 5**20)
  assert np.prod(spaces.get("nasnet", ops="nao11").sizes.astype(float)) == pytest.approx(
      per_cell**2 * 11**20)
  assert np.prod(spaces.get("nb201").sizes) == 15625
  rnn = spaces.get("rnn")
  assert (rnn.length, rnn.vocab_size) == (22, 16)
  assert np.prod(rnn.sizes.astype(float)) == pytest.approx(np.prod(np.arange(1, 12.0)) * 4**11)


@settings(max_examples=25, deadline=None)
@given(seed=seeds)
def test_round_trips(space, seed):
  rng = np.random.default_rng(seed)
  for arch in space.sample(rng, 5):
    tokens = space.encode(arch)
    assert tokens.dtype == np.int32 and tokens.shape == (space.length,)
    assert space.allowed[np.arange(space.length), tokens].all()
    assert space.decode(tokens) == arch
    assert space.from_json(space.to_json(arch)) == arch
    assert space.from_string(space.to_string(arch)) == arch
    assert space.from_dict(json.loads(json.dumps(space.to_dict(arch)))) == arch
    if hasattr(space, "from_reference"):
      assert space.from_reference(space.to_reference(arch)) == arch


@settings(max_examples=25, deadline=None)
@given(seed=seeds)
def test_mask_admits_exactly_the_valid_sequences(space, seed):
  rng = np.random.default_rng(seed)
  # Any sequence drawn under the mask decodes.
  for _ in range(5):
    tokens = np.array([rng.choice(np.flatnonzero(row)) for row in space.allowed])
    arch = space.decode(tokens)
    np.testing.assert_array_equal(space.encode(arch), tokens)
  # Unmasked sequences are valid iff every token is allowed at its position.
  position_index = np.arange(space.length)
  for _ in range(20):
    tokens = space.encode(space.sample(rng, 1)[0])
    changed = rng.choice(space.length, size=rng.integers(1, 3), replace=False)
    tokens[changed] = rng.integers(0, space.vocab_size + 2, size=changed.size)
    expected = bool(np.all(tokens < space.vocab_size) and
                    space.allowed[position_index, np.minimum(tokens, space.vocab_size - 1)].all())
    assert space.is_valid_tokens(tokens) == expected, tokens


@settings(max_examples=25, deadline=None)
@given(seed=seeds)
def test_mutation_changes_exactly_one_field(space, seed):
  rng = np.random.default_rng(seed)
  arch = space.sample(rng, 1)[0]
  for _ in range(10):
    child = space.mutate(rng, arch)
    space.check(child)
    assert np.sum(space.encode(child) != space.encode(arch)) == 1
    assert space.canonical(child) != space.canonical(arch)
    arch = child


def test_mutation_reaches_every_position():
  space = spaces.get("nasnet", nodes=2)
  rng = np.random.default_rng(0)
  arch = space.sample(rng, 1)[0]
  changed = set()
  for _ in range(500):
    changed.add(int(np.flatnonzero(space.encode(space.mutate(rng, arch)) != space.encode(arch))[0]))
  # Node 0's inputs have only 2 choices each, all positions are mutable.
  assert changed == set(range(space.length))


@settings(max_examples=25, deadline=None)
@given(seed=seeds)
def test_symmetric_sequences_share_canonical_form_and_hash(space, seed):
  rng = np.random.default_rng(seed)
  arch = space.sample(rng, 1)[0]
  tokens = space.encode(arch)
  perms = space.symmetry_permutations()
  np.testing.assert_array_equal(perms[0], np.arange(space.length))
  for perm in perms[rng.choice(len(perms), size=min(8, len(perms)), replace=False)]:
    twin = space.decode(tokens[perm])
    assert space.canonical(twin) == space.canonical(arch)
    assert space.arch_hash(twin) == space.arch_hash(arch)
  assert space.canonical(space.canonical(arch)) == space.canonical(arch)
  variants = space.symmetries(arch)
  assert variants[0] == arch
  assert len({space.to_string(v) for v in variants}) == len(variants)


def test_nasnet_branch_swap_is_the_symmetry():
  space = spaces.get("nasnet", nodes=2)
  assert len(space.symmetry_permutations()) == 2**4
  arch = NasnetArch(normal=(Node(0, 0, 1, 1), Node(2, 3, 2, 3)),
                    reduction=(Node(1, 4, 0, 2), Node(0, 1, 2, 0)))
  swapped = NasnetArch(normal=(Node(1, 1, 0, 0), Node(2, 3, 2, 3)),
                       reduction=(Node(1, 4, 0, 2), Node(2, 0, 0, 1)))
  assert space.canonical(swapped) == space.canonical(arch)
  # Node 1 of the normal cell has identical branches: 2 * 1 * 2 * 2 distinct variants.
  assert len(space.symmetries(arch)) == 8
  assert swapped in space.symmetries(arch)
  other = NasnetArch(normal=(Node(0, 1, 1, 0), Node(2, 3, 2, 3)), reduction=arch.reduction)
  assert space.canonical(other) != space.canonical(arch)


def test_hash_is_stable():
  space, arch = known.get("NAONet-B")
  assert space.arch_hash(arch) == space.arch_hash(space.from_json(space.to_json(arch)))
  # Pinned: a change here invalidates every recorded history's hashes.
  assert space.arch_hash(arch) == _PINNED_NAONET_B_HASH


_PINNED_NAONET_B_HASH = "cd689ccc1bc4c707"


@pytest.mark.parametrize("tokens, message", [
    (np.ones(39, dtype=np.int32), "expected a sequence of 40 tokens"),
    (np.ones((2, 40), dtype=np.int32), "expected a sequence of 40 tokens"),
    (np.full(40, 1.0), "must be integers"),
])
def test_decode_rejects_wrong_shapes(tokens, message):
  with pytest.raises(ValueError, match=message):
    spaces.get("nasnet").decode(tokens)


def test_decode_names_the_position_of_a_bad_token():
  space = spaces.get("nasnet")
  tokens = space.encode(known.get("NAONet-B")[1])
  bad = tokens.copy()
  bad[8] = 6  # Node 2 of the normal cell reads state 5 (n3), a later node.
  with pytest.raises(ValueError, match=r"token 6 at position 8 \(normal cell, node 2, branch 1 input\).*1\.\.4"):
    space.decode(bad)
  bad = tokens.copy()
  bad[21] = 12  # Op token beyond the vocabulary.
  with pytest.raises(ValueError, match=r"position 21 \(reduction cell, node 0, branch 1 op\).*7\.\.11"):
    space.decode(bad)
  bad = tokens.copy()
  bad[1] = 3  # An input token where an op belongs.
  with pytest.raises(ValueError, match="position 1"):
    space.decode(bad)
  with pytest.raises(ValueError, match="position 0"):
    space.decode(np.zeros(40, dtype=np.int32))  # SOS is never valid inside.


def test_nasnet_rejects_bad_archs_naming_the_field():
  space = spaces.get("nasnet", nodes=2)
  good = (Node(0, 0, 1, 1), Node(2, 3, 0, 3))
  with pytest.raises(ValueError, match=r"normal cell, node 0, branch 2.*not an earlier state.*0\.\.1"):
    space.encode(NasnetArch(normal=(Node(0, 0, 2, 1), good[1]), reduction=good))
  with pytest.raises(ValueError, match=r"reduction cell, node 1, branch 1: op id.*out of range"):
    space.encode(NasnetArch(normal=good, reduction=(good[0], Node(2, 5, 0, 0))))
  with pytest.raises(ValueError, match="has 1 nodes"):
    space.encode(NasnetArch(normal=good[:1], reduction=good))
  with pytest.raises(ValueError, match="input must be an integer"):
    space.encode(NasnetArch(normal=(Node("0", 0, 1, 1), good[1]), reduction=good))


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be an object"),
    ('{"normal": [], "reduction": []}', "has 0 nodes"),
    ('{"normal": [[0, "sep_conv_3x3", 1, "conv_9x9"], [0, "identity", 0, "identity"]],'
     ' "reduction": [[0, "identity", 0, "identity"], [0, "identity", 0, "identity"]]}',
     r"normal cell, node 0: unknown op 'conv_9x9'; choose one of \['sep_conv_3x3'"),
    ('{"normal": [[0, "identity", 0, "identity"], [3, "identity", 0, "identity"]],'
     ' "reduction": [[0, "identity", 0, "identity"], [0, "identity", 0, "identity"]]}',
     "normal cell, node 1, branch 1: input 3 .* not an earlier state"),
    ('{"normal": [[0, "identity", 0]], "reduction": []}', "expected \\[input1, op1, input2, op2\\]"),
    ('{"normal": [], "reduction": [], "extra": 1}', "unknown JSON field"),
    ('{"space": "nb201", "normal": [], "reduction": []}', "JSON field 'space' is 'nb201'"),
])
def test_nasnet_from_json_rejects_garbage(text, message):
  with pytest.raises(ValueError, match=message):
    spaces.get("nasnet", nodes=2).from_json(text)


@pytest.mark.parametrize("text, message", [
    ("normal[n0=sep_conv_3x3(s0)+identity(s1)]", "cannot parse"),
    ("normal[n0=sep_conv_3x3(s0)+identity(s1) n1=identity(n1)+identity(s0)] "
     "reduction[n0=identity(s0)+identity(s0) n1=identity(s0)+identity(s0)]",
     "normal cell, node 1, branch 1: input 3 \\(n1\\) is not an earlier state"),
    ("normal[n0=sep_conv_3x3(s0)+conv(s1) n1=identity(s1)+identity(s0)] "
     "reduction[n0=identity(s0)+identity(s0) n1=identity(s0)+identity(s0)]", "unknown op 'conv'"),
    ("normal[n0=sep_conv_3x3(x0)+identity(s1) n1=identity(s1)+identity(s0)] "
     "reduction[n0=identity(s0)+identity(s0) n1=identity(s0)+identity(s0)]", "bad state name 'x0'"),
])
def test_nasnet_from_string_rejects_garbage(text, message):
  with pytest.raises(ValueError, match=message):
    spaces.get("nasnet", nodes=2).from_string(text)


def test_reference_strings_are_checked():
  space = spaces.get("nasnet")
  with pytest.raises(ValueError, match="40 integers, got 3"):
    space.from_reference("0 1 2")
  with pytest.raises(ValueError, match="must hold integers"):
    space.from_reference("0 a " * 20)
  with pytest.raises(ValueError, match="normal cell, node 0, branch 1: input 2"):
    space.from_reference("2 0 " * 20)


@pytest.mark.parametrize("text, message", [
    ("|none~0|+|none~0|none~1|", "needs 3 '\\+'-separated groups"),
    ("|none~0|+|none~0|none~1|+|none~0|none~1|none~1|", "must end with '~2'"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "group 2 .* needs 2 edges"),
    ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "edge \\(node 0 -> node 1\\): unknown op 'conv'"),
    ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "must start and end with '\\|'"),
])
def test_nb201_rejects_bad_strings(text, message):
  with pytest.raises(ValueError, match=message):
    spaces.get("nb201").from_string(text)


def test_nb201_reads_every_official_string(nb201_table_path):
  table = np.load(nb201_table_path, allow_pickle=False)
  space = spaces.get("nb201")
  assert list(table["op_names"]) == list(space.ops)
  for arch_str, ops in zip(table["arch_str"], table["ops"]):
    arch = space.from_string(str(arch_str))
    assert arch.ops == tuple(int(o) for o in ops)
    assert space.to_string(arch) == arch_str
  optimum = space.from_string(str(table["arch_str"][6111]))
  assert space.to_string(optimum) == (
      "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|")


def test_rnn_rejects_bad_archs():
  space = spaces.get("rnn", nodes=3)
  with pytest.raises(ValueError, match="rnn node 2: predecessor 2 is not an earlier node; node 2 may read 0..1"):
    space.from_reference("0 0 2 0 0 0")
  with pytest.raises(ValueError, match="unknown activation 'gelu'"):
    space.from_string("n1=gelu(n0) n2=tanh(n1) n3=tanh(n2)")
  with pytest.raises(ValueError, match=r"position 3 \(node 2 activation\)"):
    space.decode([1, 5, 1, 9, 1, 5])
  with pytest.raises(ValueError, match="unknown 'activations'"):
    spaces.get("rnn", activations="darts")


def test_registry_errors_list_the_choices():
  with pytest.raises(ValueError, match=r"unknown search space 'darts'; choose one of \['macro', 'nasnet', 'nb201', 'rnn'\]"):
    spaces.get("darts")
  with pytest.raises(ValueError, match="unknown op set"):
    spaces.get("nasnet", ops="ws7")
  with pytest.raises(ValueError, match="bad settings"):
    spaces.get("nb201", nodes=4)
  assert spaces.from_config({"name": "rnn", "activations": "nao_ws"}).activations[2] == "sigmoid"


def test_known_naonet_a_matches_the_reference_description():
  space, arch = known.get("NAONet-A")
  assert space.op_set.name == "nao11"
  assert spaces.loose_ends(arch.normal) == (3, 5, 6)  # n1, n3, n4.
  assert spaces.loose_ends(arch.reduction) == (3, 4, 5, 6)  # n1..n4.
  assert space.to_string(arch) == (
      "normal[n0=conv_3x3(s0)+avg_pool_5x5(s1) n1=conv_1x3_3x1(n0)+conv_3x3(s1) "
      "n2=conv_1x1(s0)+conv_3x3(s1) n3=conv_1x3_3x1(s0)+conv_3x3(n2) n4=identity(s1)+conv_3x3(s0)] "
      "reduction[n0=conv_3x3(s0)+avg_pool_2x2(s1) n1=conv_1x1(s0)+avg_pool_3x3(s0) "
      "n2=conv_1x7_7x1(s0)+max_pool_2x2(s1) n3=avg_pool_3x3(s0)+conv_1x1(n0) "
      "n4=max_pool_3x3(s1)+conv_3x3(s0)]")


def test_known_tf_naonet_differs_in_one_reduction_node():
  _, a = known.get("NAONet-A")
  space, tf = known.get("NAONet-TF")
  assert a.normal == tf.normal
  differing = [i for i in range(5) if a.reduction[i] != tf.reduction[i]]
  assert differing == [2]
  assert space.to_string(tf).split()[-3] == "n2=conv_1x7_7x1(s1)+max_pool_2x2(s0)"


def test_known_ws_architectures():
  space, b = known.get("NAONet-B")
  assert space.op_set.name == "ws5"
  np.testing.assert_array_equal(space.encode(b)[:8], [1, 8, 1, 9, 1, 8, 3, 9])
  assert spaces.loose_ends(b.normal) == (3, 5, 6)  # n1, n3, n4.
  _, ws = known.get("NAONet-WS")
  assert ws.normal[0] == Node(0, 1, 0, 4)  # sep_conv_5x5(s0) + identity(s0).


def test_known_rnn_cells_use_their_own_activation_tables():
  nao_space, nao = known.get("NAO-PTB")
  ws_space, ws = known.get("NAO-WS-PTB")
  # Id 2 means identity in NAO's table and sigmoid in NAO-WS's.
  assert nao_space.to_string(nao).split()[-1] == "n11=identity(n1)"
  assert ws_space.to_string(ws).split()[2] == "n3=sigmoid(n2)"
  assert [n.predecessor for n in nao.nodes] == [0, 0, 1, 3, 4, 4, 5, 1, 7, 1, 1]
  with pytest.raises(ValueError, match="unknown architecture 'NAONet-C'"):
    known.get("NAONet-C")
  assert "56.02" in known.source("NAO-PTB")


# ---- any input to a parser: a ValueError with a message, never another exception --------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 40) | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children,
                                                                      max_size=4),
    max_leaves=20)


def _only_value_errors(parse, value):
  try:
    parse(value)
  except ValueError as e:
    assert str(e)
  # Anything else (TypeError, KeyError, IndexError, ...) fails the test.


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=200))
def test_any_string_parses_or_raises_value_error(space, text):
  _only_value_errors(space.from_string, text)
  _only_value_errors(space.from_json, text)


@settings(max_examples=60, deadline=None)
@given(value=json_values)
def test_any_json_value_parses_or_raises_value_error(space, value):
  _only_value_errors(space.from_json, json.dumps(value))
  _only_value_errors(space.from_json, json.dumps({"space": space.signature(), "x": value}))
  if isinstance(value, dict):
    _only_value_errors(space.from_json, json.dumps({"space": space.signature(), **value}))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_mutated_valid_json_parses_or_raises_value_error(space, data):
  rng = np.random.default_rng(data.draw(seeds))
  record = json.loads(space.to_json(space.sample(rng, 1)[0]))
  field = data.draw(st.sampled_from(sorted(record)))
  record[field] = data.draw(json_values)
  _only_value_errors(space.from_json, json.dumps(record))


@settings(max_examples=60, deadline=None)
@given(tokens=st.lists(st.integers(-3, 30), max_size=45))
def test_any_token_list_decodes_or_names_the_position(space, tokens):
  try:
    space.decode(np.asarray(tokens, np.int64))
  except ValueError as e:
    assert "position" in str(e) or "tokens" in str(e)
