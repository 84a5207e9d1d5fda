"""Final training of a NAO recurrent cell on Penn Treebank (reference §1.3, §8).

Command (NAO-PTB cell, hidden 850, the reference's NAO/rnn/train.py recipe):
  python -m nao_jax.main --config=configs/ptb_final.py --workdir=/tmp/nao_ptb \
      [--config.arch=NAO-WS-PTB] [--config.data.data_dir=DIR]

Needs ptb.{train,valid,test}.txt in DIR, in $NAO_JAX_DATA/ptb, or downloaded on
first use (data.download). Expected: 27,295,000 parameters; the reference
reports test perplexity 56.0 (NAO-PTB) and 56.6 (NAO-WS-PTB) after its 4000
epochs. Runs data-parallel on every local device; resumes from
``workdir/checkpoints`` when rerun.

Small variant (CPU, about a minute; the bundled valid/test files only: trains
on ptb.valid.txt without its last lines, validates on those, tests on
ptb.test.txt with unseen words read as <unk>):
  python -m nao_jax.main --config=configs/ptb_final.py:small --workdir=/tmp/ptb_small
Expected: test perplexity well below the unigram model's (see README for the figure).
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """``arg``: None for the full run, ``small`` for the CPU variant."""
  if arg not in (None, "", "small"):
    raise ValueError(f"configs/ptb_final.py:{arg}: the variant must be empty or 'small'.")
  config = ml_collections.ConfigDict()
  config.job = "ptb"
  config.seed = 1267
  config.arch = "NAO-PTB"  # Or NAO-WS-PTB (nao_jax.spaces.known).

  config.model = ml_collections.ConfigDict()
  config.model.hidden_size = 850  # Embedding = hidden size (tied decoder).
  config.model.dropout = 0.75  # Locked dropout on the cell's output.
  config.model.dropout_h = 0.25  # The cell's hidden-state mask.
  config.model.dropout_x = 0.75  # The cell's input mask.
  config.model.dropout_i = 0.2  # Locked dropout on the embedded words.
  config.model.dropout_e = 0.0  # Embedding (word) dropout; AWD-LSTM uses 0.1.
  config.model.weight_dropout = 0.0  # DropConnect on W0; the reference has none.
  config.model.init_range = 0.04

  config.data = ml_collections.ConfigDict()
  config.data.data_dir = ""  # '' = ptb/ in $NAO_JAX_DATA, ./data or ~/.cache/nao_jax/data.
  config.data.download = True
  config.data.train_split = "train"  # Which file trains: 'train', 'valid' or 'test'.
  config.data.valid_split = "valid"  # '' = none (or holdout_lines).
  config.data.test_split = "test"
  config.data.holdout_lines = 0  # > 0: the training file's last lines validate.
  config.data.map_unknown = False  # Read valid/test words outside the vocabulary as <unk>.

  config.train = ml_collections.ConfigDict()
  config.train.epochs = 4000
  config.train.batch_size = 64  # Global rows, split over all devices.
  config.train.eval_batch_size = 10  # Rows of the validation stream.
  config.train.test_batch_size = 1  # Rows of the test stream.
  config.train.bptt = 35  # Mean window; 5% of windows have mean bptt / 2.
  config.train.max_seq_len_delta = 20  # Windows are at most bptt + this long.
  config.train.pad_multiple = 8  # Windows pad to a multiple (one compiled step per size).
  config.train.learning_rate = 20.0  # Scaled by length / bptt per window.
  config.train.clip_norm = 0.25
  config.train.weight_decay = 8e-7
  config.train.alpha = 0.0  # Activation regularisation.
  config.train.beta = 1e-3  # Temporal activation regularisation.
  config.train.nonmono = 5  # ASGD once valid loss > best of all but the last 5 epochs.
  config.train.asgd_epoch = 0  # > 0: switch to ASGD after this epoch instead.
  config.train.dtype = "float32"  # 'bfloat16': bf16 matrix products, fp32 parameters.
  config.train.num_devices = 0  # 0 = all local devices.
  config.train.log_every_steps = 100

  config.ckpt = ml_collections.ConfigDict()
  config.ckpt.max_to_keep = 2

  if arg == "small":
    config.model.hidden_size = 32
    config.model.dropout = 0.2
    config.model.dropout_x = 0.2
    config.model.dropout_h = 0.1
    config.model.dropout_i = 0.1
    config.data.train_split = "valid"
    config.data.valid_split = ""
    config.data.holdout_lines = 370
    config.data.map_unknown = True
    config.train.epochs = 6
    config.train.asgd_epoch = 4
    config.train.batch_size = 16
    config.train.bptt = 20
    config.train.max_seq_len_delta = 10
    config.train.pad_multiple = 32  # One compiled step: every window pads to 30.
    config.train.log_every_steps = 50
  return config
