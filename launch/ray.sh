#!/usr/bin/env bash
# A Ray cluster for nao_jax trials: start the head and the workers, submit a search.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: launch/ray.sh ACTION [options]

Actions:
  head     on the head node: start Ray's head (GCS on --port, job server on 8265)
  worker   on every other node: join the head at --address=HEAD_IP:PORT
  submit   from any machine: submit a search with `ray job submit` to --address=http://HEAD_IP:8265;
           the search joins the cluster (executor.name=ray, executor.address=auto)
  stop     on any node: stop Ray there

Options:
  --port=PORT          head: GCS port (default 6379)
  --address=ADDRESS    worker: HEAD_IP:PORT; submit: http://HEAD_IP:8265
  --config=FILE[:ARG]  submit: config file, e.g. configs/cifar_nao.py
  --workdir=DIR        submit: workdir seen by the head node (a shared disk or gs://)
  --workers=N          submit: trials at once (default 8)
  --gpus-per-trial=G   submit: GPUs per trial (default 1)
  --override=FLAG      submit: extra --config.<field>=<value> (repeatable)
  --dry-run            print the commands without running them
  -h, --help           this help

Every node needs this repository installed with the same Python and extras
(pip install -e ".[cuda12,tfds,ray]", or ".[tpu,tfds,ray]" on Cloud TPU VMs) and
the data where the config looks for it (tfds data_dir on a bucket:
--override=--config.data.data_dir=gs://BUCKET/tensorflow_datasets).

GPU hosts:
  launch/ray.sh head                                   # on the head, prints its address
  launch/ray.sh worker --address=10.0.0.2:6379         # on each other host
  launch/ray.sh submit --address=http://10.0.0.2:8265 --config=configs/cifar_nao.py \
      --workdir=/shared/nao_cifar10 --workers=32
Cloud TPU VMs (one TPU VM per node; the TPU cores of a host are one Ray resource "TPU"):
  gcloud compute tpus tpu-vm ssh HEAD_VM --zone=ZONE --command="cd nao_jax && launch/ray.sh head"
  gcloud compute tpus tpu-vm ssh OTHER_VM --zone=ZONE --worker=all \
      --command="cd nao_jax && launch/ray.sh worker --address=HEAD_IP:6379"
  launch/ray.sh submit --address=http://HEAD_IP:8265 --config=configs/cifar_nao.py \
      --workdir=gs://BUCKET/nao --gpus-per-trial=0 \
      --override='--config.executor.resources_per_trial={"TPU": 4}'
Rerunning the same submit command resumes the search: finished trials are kept.
USAGE
}

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $# -ge 1 ]] || { usage; exit 2; }
case "$1" in -h|--help) usage; exit 0 ;; esac
action=$1; shift
case "$action" in head|worker|submit|stop) ;; *) die "unknown action '$action'; choose head, worker, submit or stop (see --help)." ;; esac

port=6379 address="" config="" workdir="" workers=8 gpus=1 dry_run=0 overrides=()
for arg in "$@"; do
  case "$arg" in
    --port=*) port=${arg#*=} ;;
    --address=*) address=${arg#*=} ;;
    --config=*) config=${arg#*=} ;;
    --workdir=*) workdir=${arg#*=} ;;
    --workers=*) workers=${arg#*=} ;;
    --gpus-per-trial=*) gpus=${arg#*=} ;;
    --override=*) overrides+=("${arg#*=}") ;;
    --dry-run) dry_run=1 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$arg' (see --help)." ;;
  esac
done

case "$action" in
head)
  [[ "$port" =~ ^[0-9]+$ ]] || die "--port='$port': expected a port number."
  run ray start --head --port="$port" --dashboard-host=0.0.0.0 ;;
worker)
  [[ "$address" =~ ^[^/:]+:[0-9]+$ ]] || die "--address='$address': expected HEAD_IP:PORT, e.g. 10.0.0.2:6379."
  run ray start --address="$address" ;;
stop)
  run ray stop ;;
submit)
  [[ "$address" =~ ^https?://[^/]+:[0-9]+$ ]] || die "--address='$address': expected http://HEAD_IP:8265."
  check_config_file "$config"
  [[ -n "$workdir" ]] || die "--workdir=DIR is required."
  [[ "$workers" =~ ^[1-9][0-9]*$ ]] || die "--workers='$workers': expected a positive integer."
  [[ "$gpus" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--gpus-per-trial='$gpus': expected a number."
  check_overrides "${overrides[@]+"${overrides[@]}"}"
  run ray job submit --address="$address" --working-dir=. -- \
    python -m nao_jax.main --config="$config" --workdir="$workdir" \
    --config.executor.name=ray --config.executor.address=auto \
    --config.executor.workers="$workers" --config.executor.gpus_per_trial="$gpus" \
    "${overrides[@]+"${overrides[@]}"}" ;;
esac
