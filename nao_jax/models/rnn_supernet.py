"""The NAO-WS shared-weight recurrent cell (reference §6.4, ``NAO-WS/rnn/model_search.py``).

Every cell of the ``rnn`` space (§1.3) is a sub-network of one language model:

* ``embedding`` ``[V, H]`` (tied to the decoder), ``decoder_bias`` ``[V]`` and node
  0's ``w0`` ``[2H, 2H]`` (input rows first) are shared by every arch, as in the
  final model (``models.rnn``).
* Node ``j`` (1..N) holds ``w{j}`` ``[j * A, H, 2H]``: one ``[H, 2H]`` block per
  (predecessor ``p`` in 0..j-1, activation ``a`` in 0..A-1) pair, block
  ``p * A + a``. This is the reference's ``_Ws[j-1]`` ``[4 * j * nhid, 2 * nhid]``
  cut into its ``nhid``-row blocks (rows ``(p * 4 + a) * nhid`` onwards), A = 4
  activations in the space's order (``nao_ws`` for the reference's ids).

An arch is an int32 ``[N, 2]`` array of (predecessor, activation) per node
(``arch_array``), a traced argument: one compilation serves every arch. The
cell with arch ``((p_j, a_j))`` computes exactly ``models.rnn.cell_step`` with
``W_j = w{j}[p_j * A + a_j]``; the cell's output is the mean of nodes 1..N, as
the final cell's (the reference's search cell also averages node 0, §9 item
18; we score the cell that is trained afterwards). Dropout is the final
model's (``models.rnn``); the reference's ``drop_path`` on whole blocks
defaults to off there and is not implemented.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nao_jax.models import rnn as rnn_model
from nao_jax.spaces.rnn import RnnArch, RnnSpace


def arch_array(space: RnnSpace, arch: RnnArch) -> np.ndarray:
  """``arch`` as int32 ``[N, 2]``: (predecessor, activation id) of nodes 1..N."""
  space.check(arch)
  return np.array([[node.predecessor, node.activation] for node in arch.nodes], np.int32)


def arch_arrays(space: RnnSpace, archs: Sequence[RnnArch]) -> np.ndarray:
  """int32 ``[len(archs), N, 2]`` (``arch_array`` of each)."""
  return np.stack([arch_array(space, arch) for arch in archs]).astype(np.int32)


def supernet_cell_step(w0: jnp.ndarray, ws: Sequence[jnp.ndarray], arch: jnp.ndarray,
                       x: jnp.ndarray, h: jnp.ndarray, activations: Sequence[str],
                       x_mask: Any = 1.0, h_mask: Any = 1.0) -> jnp.ndarray:
  """One time step of the cell of a traced ``arch``.

  Args:
    w0: ``[2H, 2H]``; ws: N blocks ``[H, 2H]``, node j's picked for ``arch``.
    arch: int32 ``[N, 2]``; x: ``[B, H]`` input; h: ``[B, H]`` previous hidden state.
    activations: the space's activation names, in id order.
    x_mask, h_mask: dropout masks ``[B, H]`` (scaled) or 1.
  Returns:
    The new hidden state ``[B, H]`` (h's dtype).
  """
  size = h.shape[-1]
  xh = jnp.concatenate([x * x_mask, h * h_mask], axis=-1).astype(w0.dtype)
  gates = jnp.dot(xh, w0).astype(h.dtype)
  states = [h + jax.nn.sigmoid(gates[:, :size]) * (jnp.tanh(gates[:, size:]) - h)]
  for j, w in enumerate(ws):
    s = jax.lax.dynamic_index_in_dim(jnp.stack(states), arch[j, 0], keepdims=False)
    gates = jnp.dot((s * h_mask).astype(w.dtype), w).astype(h.dtype)
    candidates = jnp.stack([rnn_model.ACTIVATIONS[name](gates[:, size:]) for name in activations])
    f = jax.lax.dynamic_index_in_dim(candidates, arch[j, 1], keepdims=False)
    states.append(s + jax.nn.sigmoid(gates[:, :size]) * (f - s))
  return jnp.mean(jnp.stack(states[1:]), axis=0)


class RnnSupernet(rnn_model.RnnRegularization):
  """Embedding -> shared-weight cell of a traced arch over time -> tied decoder.

  Attributes:
    space: the ``rnn`` space (its node count and activation order).
    vocab_size: words in the vocabulary.
    hidden_size: embedding and hidden size (equal: the decoder is the embedding).
    The dropout rates, ``init_range`` and ``dtype``: ``models.rnn.RnnRegularization``
    (no DropConnect here).
  """
  space: RnnSpace
  vocab_size: int
  hidden_size: int = 300

  def setup(self):
    init = self.uniform_init
    size, count = self.hidden_size, len(self.space.activations)
    self.embedding = self.param("embedding", init, (self.vocab_size, size))
    self.decoder_bias = self.param("decoder_bias", nn.initializers.zeros, (self.vocab_size,))
    self.w0 = self.param("w0", init, (2 * size, 2 * size))
    self.ws = [self.param(f"w{j}", init, (j * count, size, 2 * size))
               for j in range(1, self.space.nodes + 1)]

  def __call__(self, tokens: jnp.ndarray, hidden: jnp.ndarray, arch: jnp.ndarray,
               mask: jnp.ndarray | None = None, train: bool = False
               ) -> tuple[jnp.ndarray, jnp.ndarray, dict[str, jnp.ndarray]]:
    """Runs the arch's language model over a window.

    Args:
      tokens: int32 ``[B, T]`` input words.
      hidden: float32 ``[B, H]`` hidden state before the window.
      arch: int32 ``[N, 2]`` (``arch_array``).
      mask: float32 ``[T]``, 1 for real steps, 0 for padding at the end (the
        hidden state stops changing there); None: all real.
      train: dropout on (needs the ``dropout`` rng).
    Returns:
      ``(logits float32 [B, T, V], hidden [B, H] after the last real step,
      {'raw': cell outputs [B, T, H], 'dropped': the decoder's inputs [B, T, H]})``.
    """
    count = len(self.space.activations)
    masks = rnn_model.WindowMasks()
    if train:  # The final model's masks.
      masks = self.window_masks(tokens.shape[0], self.hidden_size, self.vocab_size)
    # The arch's blocks, picked once per window (their gradient lands in the picked rows).
    ws = [w[arch[j, 0] * count + arch[j, 1]].astype(self.dtype) for j, w in enumerate(self.ws)]
    w0 = self.w0.astype(self.dtype)
    step = lambda x_t, h: supernet_cell_step(w0, ws, arch, x_t, h, self.space.activations,
                                             masks.x, masks.h)
    return rnn_model.run_window(step, self.embedding, self.decoder_bias, tokens, hidden, mask,
                                masks, self.dtype)


def init_params(model: RnnSupernet, seed: int) -> Any:
  """The supernet's initial parameters (host numpy arrays) from ``seed``."""
  tokens = jnp.zeros((1, 2), jnp.int32)
  hidden = jnp.zeros((1, model.hidden_size), jnp.float32)
  arch = jnp.zeros((model.space.nodes, 2), jnp.int32)
  return jax.device_get(jax.jit(model.init)(jax.random.key(seed), tokens, hidden, arch)["params"])


def shared_from_final(final_params: Any, space: RnnSpace, arch: RnnArch,
                      supernet_params: Any) -> Any:
  """``supernet_params`` with a final model's weights (``models.rnn``) copied in:
  its embedding, decoder bias and ``w0``, and its ``w{j}`` into block
  ``p_j * A + a_j`` of node ``j``; the other blocks unchanged."""
  params = jax.tree.map(np.array, supernet_params)
  for name in ("embedding", "decoder_bias", "w0"):
    params[name] = np.array(final_params[name])
  count = len(space.activations)
  for j, node in enumerate(space.check(arch).nodes, start=1):
    params[f"w{j}"][node.predecessor * count + node.activation] = np.array(final_params[f"w{j}"])
  return params
