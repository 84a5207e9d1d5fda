"""The NAO encoder–predictor–decoder in Flax linen (reference §3).

Shapes: ``B`` batch, ``L`` = ``space.length`` tokens, ``T`` = ``encoder_length``
encoder steps (``L / T`` consecutive token embeddings are concatenated per
step), ``H`` hidden size, ``V`` vocabulary.

* Encoder: tokens ``[B, L]`` -> embeddings -> ``[B, T, E * L / T]`` -> LSTM ->
  per-step L2 normalisation = the *encoder outputs* ``O [B, T, H]``; the
  architecture embedding is ``normalise(mean_t O)`` ``[B, H]``.
* Predictor: MLP (``layers x width``, ReLU, dropout) -> sigmoid, on the embedding.
* Decoder: LSTM with initial state ``(h, c) = (embedding, embedding)``, Luong
  "general" attention over ``O`` (no input feeding), logits over the vocabulary.

Every LSTM keeps ONE bias vector (PyTorch keeps two redundant ones, b_ih + b_hh),
so the default CNN controller has 278,765 parameters (the reference's 279,533
minus 2 x 384 redundant biases).

The recurrences are plain ``lax.scan`` over raw parameter arrays: the input
projections, attention and logits of teacher-forced decoding are computed for
all steps at once outside the scan; only greedy decoding runs them per step.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def normalise(x: Array, axis: int = -1, eps: float = 1e-12) -> Array:
  """``x / max(||x||_2, eps)`` along ``axis`` (PyTorch's ``F.normalize``)."""
  norm = jnp.sqrt(jnp.sum(x * x, axis=axis, keepdims=True))
  return x / jnp.maximum(norm, eps)


def embedding_of(encoder_outputs: Array) -> Array:
  """Architecture embedding ``normalise(mean_t O)``: ``[B, T, H] -> [B, H]``."""
  return normalise(jnp.mean(encoder_outputs, axis=1))


def _lstm_update(gates: Array, cell: Array) -> tuple[Array, Array]:
  """One LSTM update from pre-activations ``[B, 4H]`` (order i, f, g, o)."""
  i, f, g, o = jnp.split(gates, 4, axis=-1)
  cell = jax.nn.sigmoid(f) * cell + jax.nn.sigmoid(i) * jnp.tanh(g)
  return jax.nn.sigmoid(o) * jnp.tanh(cell), cell


def _dropout(module: nn.Module, x: Array, rate: float, train: bool) -> Array:
  """Inverted dropout with the module's 'dropout' rng (identity unless training)."""
  if not train or rate == 0.0:
    return x
  keep = jax.random.bernoulli(module.make_rng("dropout"), 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


class LSTMParams(nn.Module):
  """Weights of one LSTM layer (PyTorch init U(-1/sqrt(H), 1/sqrt(H)), one bias).

  Attributes:
    input_size: features of each input step.
    hidden_size: H.
  """
  input_size: int
  hidden_size: int

  @nn.compact
  def __call__(self) -> tuple[Array, Array, Array]:
    """Returns ``(input_kernel [in, 4H], hidden_kernel [H, 4H], bias [4H])``."""
    bound = 1.0 / np.sqrt(self.hidden_size)
    init = lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -bound, bound)
    four_h = 4 * self.hidden_size
    return (self.param("input_kernel", init, (self.input_size, four_h)),
            self.param("hidden_kernel", init, (self.hidden_size, four_h)),
            self.param("bias", init, (four_h,)))


def _lstm_forward(projected_inputs: Array, hidden_kernel: Array, state: tuple[Array, Array]):
  """Scan over time-major inputs ``[T, B, 4H]``; returns outputs and the residuals."""

  def step(carry, x):
    hidden, cell = carry
    i, f, g, o = jnp.split(x + hidden @ hidden_kernel, 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    new_cell = f * cell + i * g
    tanh_cell = jnp.tanh(new_cell)
    new_hidden = o * tanh_cell
    return (new_hidden, new_cell), (new_hidden, (cell, i, f, g, o, tanh_cell))

  _, (outputs, residuals) = jax.lax.scan(step, state, projected_inputs)
  return outputs, residuals


@jax.custom_vjp
def _lstm_time_major(projected_inputs: Array, hidden_kernel: Array, state: tuple[Array, Array]
                     ) -> Array:
  return _lstm_forward(projected_inputs, hidden_kernel, state)[0]


def _lstm_fwd(projected_inputs, hidden_kernel, state):
  outputs, residuals = _lstm_forward(projected_inputs, hidden_kernel, state)
  previous_hidden = jnp.concatenate([state[0][None], outputs[:-1]])
  return outputs, (hidden_kernel, previous_hidden, residuals)


def _lstm_bwd(saved, output_cotangents):
  """Reverse scan for the gate cotangents; the kernel's gradient is one matmul after it."""
  hidden_kernel, previous_hidden, residuals = saved

  def step(carry, inputs):
    d_hidden_next, d_cell_next = carry
    d_output, (cell, i, f, g, o, tanh_cell) = inputs
    d_hidden = d_output + d_hidden_next
    d_cell = d_cell_next + d_hidden * o * (1.0 - tanh_cell ** 2)
    d_gates = jnp.concatenate([d_cell * g * i * (1.0 - i), d_cell * cell * f * (1.0 - f),
                               d_cell * i * (1.0 - g ** 2),
                               d_hidden * tanh_cell * o * (1.0 - o)], axis=-1)
    return (d_gates @ hidden_kernel.T, d_cell * f), d_gates

  zeros = jnp.zeros_like(output_cotangents[0])
  (d_hidden0, d_cell0), d_gates = jax.lax.scan(
      step, (zeros, zeros), (output_cotangents, residuals), reverse=True)
  d_kernel = jnp.einsum("tbh,tbg->hg", previous_hidden, d_gates)
  return d_gates, d_kernel, (d_hidden0, d_cell0)


_lstm_time_major.defvjp(_lstm_fwd, _lstm_bwd)


def run_lstm(projected_inputs: Array, hidden_kernel: Array, state: tuple[Array, Array]
             ) -> Array:
  """Runs the recurrence over pre-projected inputs ``[B, T, 4H]``; returns ``[B, T, H]``.

  The initial ``state`` is ``(hidden, cell)``, each ``[B, H]``. Its custom VJP
  computes the hidden kernel's gradient as one matmul after the reverse scan
  (autodiff of ``scan`` would accumulate it step by step).
  """
  outputs = _lstm_time_major(jnp.swapaxes(projected_inputs, 0, 1), hidden_kernel, state)
  return jnp.swapaxes(outputs, 0, 1)


class Encoder(nn.Module):
  """Tokens -> normalised encoder outputs (reference §3.1).

  Attributes:
    vocab_size: V.
    length: L tokens per sequence.
    encoder_length: T steps; L must be a multiple of T.
    embedding_size: E.
    hidden_size: H.
    dropout: dropout rate on the token embeddings (training only).
  """
  vocab_size: int
  length: int
  encoder_length: int
  embedding_size: int
  hidden_size: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, tokens: Array, train: bool = False) -> Array:
    """int32 ``[B, L]`` -> float32 ``O [B, T, H]``, each step of unit L2 norm."""
    embedded = nn.Embed(self.vocab_size, self.embedding_size,
                        embedding_init=nn.initializers.normal(1.0), name="embedding")(tokens)
    embedded = _dropout(self, embedded, self.dropout, train)
    batch = tokens.shape[0]
    ratio = self.length // self.encoder_length
    steps = embedded.reshape(batch, self.encoder_length, ratio * self.embedding_size)
    input_kernel, hidden_kernel, bias = LSTMParams(
        ratio * self.embedding_size, self.hidden_size, name="lstm")()
    zeros = jnp.zeros((batch, self.hidden_size), steps.dtype)
    outputs = run_lstm(steps @ input_kernel + bias[None, None], hidden_kernel, (zeros, zeros))
    return normalise(outputs)


class Predictor(nn.Module):
  """Embedding ``[B, H]`` -> predicted score in (0, 1) ``[B]`` (reference §3.2).

  Attributes:
    layers: number of hidden ReLU layers (0: a single linear layer).
    width: units per hidden layer.
    dropout: dropout after each hidden layer (training only).
  """
  layers: int
  width: int
  dropout: float

  @nn.compact
  def __call__(self, embedding: Array, train: bool = False) -> Array:
    x = embedding
    for i in range(self.layers):
      x = nn.relu(nn.Dense(self.width, name=f"hidden_{i}")(x))
      x = _dropout(self, x, self.dropout, train)
    return jax.nn.sigmoid(nn.Dense(1, name="output")(x))[:, 0]


class Decoder(nn.Module):
  """Attention LSTM decoder (reference §3.3) with teacher-forced and greedy modes.

  Attributes:
    vocab_size: V.
    length: L decoding steps.
    hidden_size: H (equal to the encoder's: the initial state is the embedding).
    dropout: dropout on the input token embeddings (teacher-forced training only).
  """
  vocab_size: int
  length: int
  hidden_size: int
  dropout: float = 0.0

  def setup(self):
    h = self.hidden_size
    self.embedding = self.param("embedding", nn.initializers.normal(1.0), (self.vocab_size, h))
    self.lstm = LSTMParams(h, h)
    self.attention_input = self.param(
        "attention_input", nn.initializers.lecun_normal(), (h, h))
    self.attention_output = self.param(
        "attention_output", nn.initializers.lecun_normal(), (2 * h, h))
    self.logits_kernel = self.param("logits_kernel", nn.initializers.lecun_normal(),
                                    (h, self.vocab_size))
    self.logits_bias = self.param("logits_bias", nn.initializers.zeros, (self.vocab_size,))

  def _attend_and_project(self, hidden: Array, encoder_outputs: Array) -> Array:
    """Luong "general" attention + output layer: ``[B, ..., H] -> logits [B, ..., V]``.

    ``hidden`` is ``[B, H]`` (one step) or ``[B, L, H]`` (all steps).
    """
    query = hidden @ self.attention_input
    if hidden.ndim == 2:
      scores = jnp.einsum("bh,bth->bt", query, encoder_outputs)
      context = jnp.einsum("bt,bth->bh", jax.nn.softmax(scores, axis=-1), encoder_outputs)
    else:
      scores = jnp.einsum("blh,bth->blt", query, encoder_outputs)
      context = jnp.einsum("blt,bth->blh", jax.nn.softmax(scores, axis=-1), encoder_outputs)
    output = jnp.tanh(jnp.concatenate([context, hidden], axis=-1) @ self.attention_output)
    bias = self.logits_bias.reshape((1,) * (output.ndim - 1) + (-1,))
    return output @ self.logits_kernel + bias

  def teacher_forced(self, encoder_outputs: Array, embedding: Array, targets: Array,
                     train: bool = False) -> Array:
    """Logits ``[B, L, V]`` of each target token given the previous targets.

    Inputs are ``[SOS] + targets[:, :-1]``; ``targets`` is int32 ``[B, L]``.
    """
    inputs = jnp.concatenate([jnp.zeros_like(targets[:, :1]), targets[:, :-1]], axis=1)
    embedded = _dropout(self, self.embedding[inputs], self.dropout, train)
    input_kernel, hidden_kernel, bias = self.lstm()
    hidden = run_lstm(embedded @ input_kernel + bias[None, None], hidden_kernel,
                      (embedding, embedding))
    return self._attend_and_project(hidden, encoder_outputs)

  def greedy(self, encoder_outputs: Array, embedding: Array, allowed: Array) -> Array:
    """Greedy decoding restricted to ``allowed`` (bool ``[L, V]``): int32 ``[B, L]``.

    Disallowed tokens get logit -inf, so every output is a valid sequence.
    """
    input_kernel, hidden_kernel, bias = self.lstm()
    table = self.embedding @ input_kernel + bias[None]  # [V, 4H]: input projection per token.

    def step(carry, allowed_here):
      hidden, cell, previous = carry
      hidden, cell = _lstm_update(table[previous] + hidden @ hidden_kernel, cell)
      logits = self._attend_and_project(hidden, encoder_outputs)
      token = jnp.argmax(jnp.where(allowed_here[None], logits, -jnp.inf), axis=-1)
      token = token.astype(jnp.int32)
      return (hidden, cell, token), token

    start = jnp.zeros(embedding.shape[:1], jnp.int32)
    _, tokens = jax.lax.scan(step, (embedding, embedding, start), allowed)
    return jnp.swapaxes(tokens, 0, 1)

  def __call__(self, encoder_outputs: Array, embedding: Array, targets: Array,
               train: bool = False) -> Array:
    return self.teacher_forced(encoder_outputs, embedding, targets, train)


class Controller(nn.Module):
  """Encoder, predictor and decoder sharing one embedding space.

  Attributes:
    vocab_size, length, encoder_length, embedding_size, hidden_size: see ``Encoder``.
    mlp_layers, mlp_width, mlp_dropout: see ``Predictor``.
    predictor_input: what the predictor reads: ``embedding`` (the reference: the
      normalised mean of the encoder outputs ``[B, H]``) or ``outputs`` (every
      encoder step's output, concatenated ``[B, T * H]``, which keeps what each
      position holds; the gradient step moves the outputs either way).
    encoder_dropout, decoder_dropout: dropout on the token embeddings.
  """
  vocab_size: int
  length: int
  encoder_length: int
  embedding_size: int
  hidden_size: int
  mlp_layers: int
  mlp_width: int
  mlp_dropout: float
  predictor_input: str = "embedding"
  encoder_dropout: float = 0.0
  decoder_dropout: float = 0.0

  def setup(self):
    self.encoder = Encoder(self.vocab_size, self.length, self.encoder_length,
                           self.embedding_size, self.hidden_size, self.encoder_dropout)
    self.predictor = Predictor(self.mlp_layers, self.mlp_width, self.mlp_dropout)
    self.decoder = Decoder(self.vocab_size, self.length, self.hidden_size, self.decoder_dropout)

  def encode(self, tokens: Array, train: bool = False) -> Array:
    """int32 ``[B, L]`` -> normalised encoder outputs ``[B, T, H]``."""
    return self.encoder(tokens, train)

  def predict(self, encoder_outputs: Array, train: bool = False) -> Array:
    """Encoder outputs ``[B, T, H]`` -> predicted score ``[B]`` in (0, 1)."""
    return self.predictor(self._predictor_input(encoder_outputs, embedding_of(encoder_outputs)),
                          train)

  def _predictor_input(self, encoder_outputs: Array, embedding: Array) -> Array:
    """Encoder outputs ``[B, T, H]`` and their embedding ``[B, H]`` -> the predictor's
    input: the embedding, or the outputs concatenated ``[B, T * H]``."""
    if self.predictor_input == "outputs":
      return encoder_outputs.reshape(encoder_outputs.shape[0], -1)
    return embedding

  def decode_greedy(self, encoder_outputs: Array, allowed: Array) -> Array:
    """Encoder outputs ``[B, T, H]`` -> greedy masked tokens int32 ``[B, L]``."""
    return self.decoder.greedy(encoder_outputs, embedding_of(encoder_outputs), allowed)

  def __call__(self, tokens: Array, train: bool = False
               ) -> tuple[Array, Array, dict[str, Any]]:
    """Teacher-forced pass: ``(pred [B], logits [B, L, V], intermediates)``.

    ``intermediates`` holds ``encoder_outputs [B, T, H]`` and ``embedding [B, H]``.
    """
    encoder_outputs = self.encode(tokens, train)
    embedding = embedding_of(encoder_outputs)
    pred = self.predictor(self._predictor_input(encoder_outputs, embedding), train)
    logits = self.decoder(encoder_outputs, embedding, tokens, train)
    return pred, logits, {"encoder_outputs": encoder_outputs, "embedding": embedding}
