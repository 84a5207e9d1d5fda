"""Final training of a NAO architecture on CIFAR-10 (reference §7.1).

Command (NAONet-A, N=6, F=36, 600 epochs, batch 128, cutout 16):
  python -m nao_jax.main --config=configs/cifar_final.py --workdir=/tmp/naonet_a \
      [--config.arch=NAONet-B | --config.arch=/path/to/best_arch.json] \
      [--config.data.data_dir=gs://bucket/tensorflow_datasets] [--config.train.dtype=bfloat16]

Expected: 11,470,150 parameters (+476,426 in the auxiliary head); the reference
reports 2.48% test error for NAONet-A-36 (2.93% for NAONet-B-36). Goal: under 3 h
on one H100 with bf16 (the reference took 2 days on a P40); runs data-parallel
on every local GPU / TPU core. Resumes from ``workdir/checkpoints`` when rerun.

Small variant (CPU, a few minutes; 8x8 scikit-learn digits, no download):
  python -m nao_jax.main --config=configs/cifar_final.py:small --workdir=/tmp/naonet_small
Expected: test accuracy well above the 10% of chance (see README for the figure).
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """``arg``: None for the full run, ``small`` for the digits variant."""
  if arg not in (None, "", "small"):
    raise ValueError(f"configs/cifar_final.py:{arg}: the variant must be empty or 'small'.")
  config = ml_collections.ConfigDict()
  config.job = "train"
  config.seed = 0
  # A published name (nao_jax.spaces.known.NAMES) or a best_arch.json path.
  config.arch = "NAONet-A"

  config.model = ml_collections.ConfigDict()
  config.model.num_cells = 6  # N: 3N + 2 cells.
  config.model.features = 36  # F.
  config.model.auxiliary = True
  config.model.aux_weight = 0.4
  config.model.dropout_keep_prob = 0.6
  config.model.drop_path_keep_prob = 0.8

  config.data = ml_collections.ConfigDict()
  config.data.name = "cifar10"
  config.data.data_dir = ""  # '' = ~/tensorflow_datasets; gs:// paths work.
  config.data.download = True
  config.data.split = "full"  # 'full': 50k train / test; 'search': 45k / 5k valid / test.
  config.data.valid_size = 5000
  config.data.split_seed = 0

  config.augment = ml_collections.ConfigDict()
  config.augment.pad = 4
  config.augment.flip = True
  config.augment.cutout = 16

  config.train = ml_collections.ConfigDict()
  config.train.epochs = 600
  config.train.batch_size = 128  # Global, split over all devices.
  config.train.eval_batch_size = 512
  config.train.learning_rate = 0.025  # Cosine to 0, per epoch.
  config.train.momentum = 0.9
  config.train.weight_decay = 3e-4
  config.train.clip_norm = 5.0
  config.train.label_smoothing = 0.0
  config.train.dtype = "float32"  # 'bfloat16': bf16 compute, fp32 parameters.
  config.train.num_devices = 0  # 0 = all local devices.
  # True on multi-host slices; `python -m nao_jax.main --distributed` (launch/tpu.sh)
  # initialises every job that way.
  config.train.distributed = False
  config.train.log_every_steps = 100

  config.ckpt = ml_collections.ConfigDict()
  config.ckpt.max_to_keep = 2
  config.ckpt.every_steps = 1000  # And at every epoch's end; 0: epochs only.

  if arg == "small":
    config.model.num_cells = 1
    config.model.features = 8
    config.data.name = "digits"
    config.data.split = "search"
    config.data.valid_size = 200
    config.train.epochs = 4
    config.train.batch_size = 64
    config.train.eval_batch_size = 64
    config.train.learning_rate = 0.05
    config.train.log_every_steps = 10
  return config
