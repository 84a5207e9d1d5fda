"""The ``controller`` config section and its validated, hashable form.

``default_config(space_name)`` gives every size and training field (defaults of
reference §3.4: the NAO-WS search column for ``nasnet``, the NAO-WS RNN column
for ``rnn``; ``nb201`` uses settings tuned on NAS-Bench-201, see
benchmarks/results/controller.md). ``settings_from_config(config, space)``
checks it against a space and returns a frozen ``Settings`` that jitted code
can take as a static argument.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from nao_jax.spaces import base

TARGET_TRANSFORMS = ("minmax", "rank", "standardize")
LR_SCHEDULES = ("constant", "cosine")
PREDICTOR_INPUTS = ("embedding", "outputs")

# Per-space overrides of the NAO-WS CNN defaults.
_SPACE_DEFAULTS = {
    "nasnet": dict(encoder_length=None),  # None: length / 2 (one branch per encoder step).
    "rnn": dict(encoder_length=None, mlp_layers=4, mlp_dropout=0.0),
    "nb201": dict(encoder_length=None, embedding_size=64, target_transform="rank",
                  epochs=300, lr_schedule="cosine"),
}


def default_config(space_name: str = "nasnet") -> ml_collections.ConfigDict:
  """The controller section for a space (``nasnet``, ``nb201`` or ``rnn``).

  ``encoder.length`` None means: half the sequence length if it is even (two
  consecutive tokens per encoder step, as the reference), else the length.
  """
  if space_name not in _SPACE_DEFAULTS:
    raise ValueError(f"no controller defaults for space {space_name!r}; "
                     f"choose one of {sorted(_SPACE_DEFAULTS)}.")
  overrides = _SPACE_DEFAULTS[space_name]
  c = ml_collections.ConfigDict()
  c.encoder = ml_collections.ConfigDict(dict(
      length=ml_collections.FieldReference(overrides.get("encoder_length"), field_type=int),
      embedding_size=overrides.get("embedding_size", 48),
      hidden_size=96,
      dropout=0.0))
  c.predictor = ml_collections.ConfigDict(dict(
      layers=overrides.get("mlp_layers", 3),
      width=200,
      dropout=overrides.get("mlp_dropout", 0.1),
      # embedding (reference): the normalised mean of the encoder outputs;
      # outputs: every encoder step's output, concatenated (see model.Controller).
      input="embedding"))
  c.decoder = ml_collections.ConfigDict(dict(
      hidden_size=96,  # Must equal encoder.hidden_size: (h0, c0) = (embedding, embedding).
      dropout=0.0))
  c.train = ml_collections.ConfigDict(dict(
      epochs=overrides.get("epochs", 1000),
      batch_size=100,
      learning_rate=1e-3,
      lr_schedule=overrides.get("lr_schedule", "constant"),  # cosine: decay to 0 in each fit.
      weight_decay=1e-4,  # Coupled L2 (added to the gradient before Adam, like torch).
      grad_clip=5.0,
      trade_off=0.8,  # lambda: weight of the MSE; 1 - lambda weighs the token NLL.
      target_transform=overrides.get("target_transform", "minmax"),
      augment=True,  # Draw a symmetry of the space per sample per step.
      masked_nll=False,  # True: the NLL's softmax is restricted to allowed tokens.
      pool_capacity=0,  # 0: pad the pool to batch_size * 2^k (few distinct compilations).
      reset_optimizer=True))  # Fresh Adam moments at each fit (reference warm start).
  c.generate = ml_collections.ConfigDict(dict(
      max_step_size=50,
      seed_batch=100))  # Seeds are padded to a multiple of this (one compilation).
  return c


@dataclasses.dataclass(frozen=True)
class Settings:
  """Validated controller settings (hashable, usable as a jit static argument)."""
  vocab_size: int
  length: int
  encoder_length: int
  embedding_size: int
  hidden_size: int
  encoder_dropout: float
  mlp_layers: int
  mlp_width: int
  mlp_dropout: float
  predictor_input: str
  decoder_dropout: float
  epochs: int
  batch_size: int
  learning_rate: float
  lr_schedule: str
  weight_decay: float
  grad_clip: float
  trade_off: float
  target_transform: str
  augment: bool
  masked_nll: bool
  pool_capacity: int
  reset_optimizer: bool
  max_step_size: int
  seed_batch: int

  def model_kwargs(self) -> dict[str, object]:
    """Keyword arguments of ``model.Controller``."""
    return dict(vocab_size=self.vocab_size, length=self.length,
                encoder_length=self.encoder_length, embedding_size=self.embedding_size,
                hidden_size=self.hidden_size, mlp_layers=self.mlp_layers,
                mlp_width=self.mlp_width, mlp_dropout=self.mlp_dropout,
                predictor_input=self.predictor_input,
                encoder_dropout=self.encoder_dropout, decoder_dropout=self.decoder_dropout)


def _positive(value, name: str, kind=int, allow_zero: bool = False):
  if isinstance(value, bool) or not isinstance(value, (int, float)) or (
      kind is int and not float(value).is_integer()):
    raise ValueError(f"{name} must be a{'n integer' if kind is int else ' number'}, "
                     f"got {value!r}.")
  if value < 0 or (value == 0 and not allow_zero):
    raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}.")
  return kind(value)


def _rate(value, name: str) -> float:
  value = _positive(value, name, float, allow_zero=True)
  if value >= 1.0:
    raise ValueError(f"{name} must be in [0, 1), got {value!r}.")
  return value


def settings_from_config(config: ml_collections.ConfigDict, space: base.SearchSpace
                         ) -> Settings:
  """Checks the controller section against ``space``; ValueError names the field."""
  encoder_length = config.encoder.length
  if encoder_length is None:
    encoder_length = space.length // 2 if space.length % 2 == 0 else space.length
  encoder_length = _positive(encoder_length, "encoder.length")
  if space.length % encoder_length:
    divisors = [d for d in range(1, space.length + 1) if space.length % d == 0]
    raise ValueError(
        f"encoder.length={encoder_length} does not divide the sequence length "
        f"{space.length} of space {space.signature()}; use one of {divisors} (or None).")
  hidden = _positive(config.encoder.hidden_size, "encoder.hidden_size")
  if config.decoder.hidden_size != hidden:
    raise ValueError(
        f"decoder.hidden_size={config.decoder.hidden_size} must equal encoder.hidden_size="
        f"{hidden}: the decoder starts from (h, c) = (embedding, embedding).")
  train = config.train
  if train.target_transform not in TARGET_TRANSFORMS:
    raise ValueError(f"train.target_transform={train.target_transform!r}; choose one of "
                     f"{list(TARGET_TRANSFORMS)}.")
  predictor_input = config.predictor.get("input", "embedding")
  if predictor_input not in PREDICTOR_INPUTS:
    raise ValueError(f"predictor.input={predictor_input!r}; choose one of "
                     f"{list(PREDICTOR_INPUTS)}.")
  if train.lr_schedule not in LR_SCHEDULES:
    raise ValueError(f"train.lr_schedule={train.lr_schedule!r}; choose one of "
                     f"{list(LR_SCHEDULES)}.")
  trade_off = float(train.trade_off)
  if not 0.0 <= trade_off <= 1.0:
    raise ValueError(f"train.trade_off must be in [0, 1], got {train.trade_off!r}.")
  batch_size = _positive(train.batch_size, "train.batch_size")
  capacity = _positive(train.pool_capacity, "train.pool_capacity", allow_zero=True)
  if capacity % batch_size:
    raise ValueError(f"train.pool_capacity={capacity} must be 0 or a multiple of "
                     f"train.batch_size={batch_size}.")
  return Settings(
      vocab_size=space.vocab_size, length=space.length, encoder_length=encoder_length,
      embedding_size=_positive(config.encoder.embedding_size, "encoder.embedding_size"),
      hidden_size=hidden,
      encoder_dropout=_rate(config.encoder.dropout, "encoder.dropout"),
      mlp_layers=_positive(config.predictor.layers, "predictor.layers", allow_zero=True),
      mlp_width=_positive(config.predictor.width, "predictor.width"),
      mlp_dropout=_rate(config.predictor.dropout, "predictor.dropout"),
      predictor_input=predictor_input,
      decoder_dropout=_rate(config.decoder.dropout, "decoder.dropout"),
      epochs=_positive(train.epochs, "train.epochs"),
      batch_size=batch_size,
      learning_rate=_positive(train.learning_rate, "train.learning_rate", float),
      lr_schedule=train.lr_schedule,
      weight_decay=_positive(train.weight_decay, "train.weight_decay", float, allow_zero=True),
      grad_clip=_positive(train.grad_clip, "train.grad_clip", float),
      trade_off=trade_off,
      target_transform=train.target_transform,
      augment=bool(train.augment),
      masked_nll=bool(train.masked_nll),
      pool_capacity=capacity,
      reset_optimizer=bool(train.reset_optimizer),
      max_step_size=_positive(config.generate.max_step_size, "generate.max_step_size"),
      seed_batch=_positive(config.generate.seed_batch, "generate.seed_batch"))
