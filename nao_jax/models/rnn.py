"""The PTB language model of an ``rnn``-space cell (reference §1.3): embedding,
one recurrent cell scanned over time, and a softmax decoder tied to the embedding.

The cell (``cell_step``): node 0 is ``s0 = h + sigmoid(c0) * (tanh(h0) - h)``
with ``[c0, h0] = [x, h] W0``; node ``j`` reads ``s_p`` (its predecessor ``p``)
and computes ``s_j = s_p + sigmoid(c) * (f(h) - s_p)`` with ``[c, h] = s_p W_j``;
the new hidden state is the mean of nodes 1..N.

Regularisation as in the reference's final training (``NAO/rnn/model.py``):
word-level embedding dropout (whole rows of the embedding), locked (variational)
dropout on the embedded input (``dropout_i``) and on the cell's output
(``dropout``), and, inside the cell, one mask per sequence on ``x``
(``dropout_x``) and on every state entering a matrix (``dropout_h``).
``weight_dropout`` (DropConnect on ``W0``, one mask per sequence) is an
AWD-LSTM regulariser the reference does not use: its default is off.
Every weight is drawn uniformly from ``[-init_range, init_range]``; the decoder
bias starts at zero.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from nao_jax.spaces.rnn import RnnArch, RnnSpace

ACTIVATIONS: dict[str, Callable[[jnp.ndarray], jnp.ndarray]] = {
    "tanh": jnp.tanh, "relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid,
    "identity": lambda x: x,
}


def cell_step(w0: jnp.ndarray, ws: Sequence[jnp.ndarray], x: jnp.ndarray, h: jnp.ndarray,
              nodes: Sequence[tuple[int, str]], x_mask: Any = 1.0,
              h_mask: Any = 1.0) -> jnp.ndarray:
  """One time step of the cell.

  Args:
    w0: ``[D + H, 2H]``, node 0's matrix (input rows first).
    ws: N matrices ``[H, 2H]``, one per node 1..N.
    x: ``[B, D]`` input; h: ``[B, H]`` previous hidden state.
    nodes: ``(predecessor, activation name)`` of nodes 1..N.
    x_mask, h_mask: dropout masks ``[B, D]`` / ``[B, H]`` (already scaled) or 1.
  Returns:
    The new hidden state ``[B, H]`` (h's dtype).
  """
  size = h.shape[-1]
  xh = jnp.concatenate([x * x_mask, h * h_mask], axis=-1).astype(w0.dtype)
  gates = jnp.dot(xh, w0).astype(h.dtype)
  states = [h + jax.nn.sigmoid(gates[:, :size]) * (jnp.tanh(gates[:, size:]) - h)]
  for w, (predecessor, activation) in zip(ws, nodes):
    s = states[predecessor]
    gates = jnp.dot((s * h_mask).astype(w.dtype), w).astype(h.dtype)
    states.append(s + jax.nn.sigmoid(gates[:, :size]) *
                  (ACTIVATIONS[activation](gates[:, size:]) - s))
  return jnp.mean(jnp.stack(states[1:]), axis=0)


def dropout_mask(key: jax.Array, shape: tuple[int, ...], rate: float) -> jnp.ndarray:
  """A float32 dropout mask of ``shape``: 0 with probability ``rate``, else ``1 / (1 - rate)``."""
  return jax.random.bernoulli(key, 1.0 - rate, shape).astype(jnp.float32) / (1.0 - rate)


class WindowMasks(NamedTuple):
  """A window's dropout masks (scaled), or 1.0 where a dropout is off.

  Attributes:
    embedding: ``[V, 1]``, on the embedding's rows (embedding dropout).
    w0: ``W0``'s shape (DropConnect).
    inputs: ``[B, 1, H]``, on the embedded words (locked over time).
    x: ``[B, H]``, the cell's input mask.
    h: ``[B, H]``, the cell's mask on states entering a matrix.
    output: ``[B, 1, H]``, on the cell's outputs (locked over time).
  """
  embedding: Any = 1.0
  w0: Any = 1.0
  inputs: Any = 1.0
  x: Any = 1.0
  h: Any = 1.0
  output: Any = 1.0


def run_window(step: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray], embedding: jnp.ndarray,
               decoder_bias: jnp.ndarray, tokens: jnp.ndarray, hidden: jnp.ndarray,
               mask: jnp.ndarray | None, masks: WindowMasks, dtype: Any
               ) -> tuple[jnp.ndarray, jnp.ndarray, dict[str, jnp.ndarray]]:
  """Embeds ``tokens``, scans ``step(x_t [B, H], h [B, H]) -> new h`` over time and
  decodes with the (undropped) tied embedding; arguments and results as
  ``RnnLanguageModel.__call__``, with ``embedding`` ``[V, H]``, ``decoder_bias``
  ``[V]`` and ``masks`` applied to the embedding, its output and the cell's outputs."""
  x = jnp.take(embedding * masks.embedding, tokens, axis=0) * masks.inputs
  mask = jnp.ones((tokens.shape[1],), jnp.float32) if mask is None else mask

  def scan_step(h, inputs):
    x_t, real = inputs
    new = jnp.where(real > 0, step(x_t, h), h)
    return new, new

  hidden, raw = jax.lax.scan(scan_step, hidden.astype(jnp.float32),
                             (jnp.swapaxes(x, 0, 1), mask))
  raw = jnp.swapaxes(raw, 0, 1)
  dropped = raw * masks.output
  logits = jnp.dot(dropped.astype(dtype), embedding.T.astype(dtype))
  logits = logits.astype(jnp.float32) + decoder_bias
  return logits, hidden, {"raw": raw, "dropped": dropped}


class RnnRegularization(nn.Module):
  """What the final model and the NAO-WS supernet (``models.rnn_supernet``) share:
  their dropout rates (module docstring), initialisation and compute dtype,
  keyword-only, and the masks they draw.

  Attributes:
    dropout: locked dropout on the cell's output (before the decoder).
    dropout_h: the cell's mask on the hidden state and on every node's input.
    dropout_x: the cell's mask on its input.
    dropout_i: locked dropout on the embedded words.
    dropout_e: embedding dropout (a dropped word is zero everywhere in the batch).
    init_range: the uniform initialisation's bound.
    dtype: compute dtype of the matrix products (parameters stay float32).
  """
  _: dataclasses.KW_ONLY
  dropout: float = 0.75
  dropout_h: float = 0.25
  dropout_x: float = 0.75
  dropout_i: float = 0.2
  dropout_e: float = 0.0
  init_range: float = 0.04
  dtype: Any = jnp.float32

  def uniform_init(self, key: jax.Array, shape: tuple[int, ...]) -> jnp.ndarray:
    return jax.random.uniform(key, shape, jnp.float32, -self.init_range, self.init_range)

  def window_masks(self, batch: int, size: int, vocab_size: int,
                   weight_dropout: float = 0.0) -> WindowMasks:
    """A training window's masks, drawn from the ``dropout`` rng split six ways in a
    fixed order, so that a supernet and a final model draw the same masks."""
    keys = jax.random.split(self.make_rng("dropout"), 6)
    return WindowMasks(
        embedding=(dropout_mask(keys[0], (vocab_size, 1), self.dropout_e)
                   if self.dropout_e else 1.0),
        w0=(dropout_mask(keys[1], (2 * size, 2 * size), weight_dropout)
            if weight_dropout else 1.0),
        inputs=dropout_mask(keys[2], (batch, 1, size), self.dropout_i),
        x=dropout_mask(keys[3], (batch, size), self.dropout_x),
        h=dropout_mask(keys[4], (batch, size), self.dropout_h),
        output=dropout_mask(keys[5], (batch, 1, size), self.dropout))


class RnnLanguageModel(RnnRegularization):
  """Embedding -> recurrent cell over time -> tied softmax decoder.

  Attributes:
    arch: the cell (checked against ``space``).
    space: the ``rnn`` space whose activation order ``arch`` uses.
    vocab_size: words in the vocabulary.
    hidden_size: embedding and hidden size (equal: the decoder is the embedding).
    weight_dropout: DropConnect on ``W0``.
    The dropout rates, ``init_range`` and ``dtype``: ``RnnRegularization``.
  """
  arch: RnnArch
  space: RnnSpace
  vocab_size: int
  hidden_size: int = 850
  weight_dropout: float = 0.0

  def setup(self):
    self.space.check(self.arch)
    init, size = self.uniform_init, self.hidden_size
    self.embedding = self.param("embedding", init, (self.vocab_size, size))
    self.decoder_bias = self.param("decoder_bias", nn.initializers.zeros, (self.vocab_size,))
    self.w0 = self.param("w0", init, (2 * size, 2 * size))
    self.ws = [self.param(f"w{j}", init, (size, 2 * size))
               for j in range(1, len(self.arch.nodes) + 1)]

  def __call__(self, tokens: jnp.ndarray, hidden: jnp.ndarray, mask: jnp.ndarray | None = None,
               train: bool = False) -> tuple[jnp.ndarray, jnp.ndarray, dict[str, jnp.ndarray]]:
    """Runs the model over a window.

    Args:
      tokens: int32 ``[B, T]`` input words.
      hidden: float32 ``[B, H]`` hidden state before the window.
      mask: float32 ``[T]``, 1 for real time steps, 0 for padding at the end (the
        hidden state stops changing there); None: all real.
      train: dropout on (needs the ``dropout`` rng).
    Returns:
      ``(logits float32 [B, T, V], hidden [B, H] after the last real step,
      {'raw': cell outputs [B, T, H], 'dropped': the decoder's inputs [B, T, H]})``.
    """
    nodes = [(node.predecessor, self.space.activations[node.activation])
             for node in self.arch.nodes]
    masks = WindowMasks()
    if train:
      masks = self.window_masks(tokens.shape[0], self.hidden_size, self.vocab_size,
                                self.weight_dropout)
    w0 = (self.w0 * masks.w0).astype(self.dtype)
    ws = [w.astype(self.dtype) for w in self.ws]
    step = lambda x_t, h: cell_step(w0, ws, x_t, h, nodes, masks.x, masks.h)
    return run_window(step, self.embedding, self.decoder_bias, tokens, hidden, mask, masks,
                      self.dtype)


def count_params(params: Any) -> int:
  """The number of parameters in a (possibly abstract) parameter tree."""
  return sum(int(x.size) for x in jax.tree.leaves(params))


def abstract_params(model: RnnLanguageModel) -> Any:
  """The parameter tree's shapes (``jax.ShapeDtypeStruct`` leaves), nothing computed."""
  tokens = jax.ShapeDtypeStruct((1, 2), jnp.int32)
  hidden = jax.ShapeDtypeStruct((1, model.hidden_size), jnp.float32)
  return jax.eval_shape(model.init, jax.random.key(0), tokens, hidden)["params"]
