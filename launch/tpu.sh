#!/usr/bin/env bash
# Cloud TPU VM lifecycle for nao_jax: create, install, run a config on all workers, delete.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: launch/tpu.sh ACTION --name=NAME --zone=ZONE [options]

Actions:
  create   create a TPU VM (single host, e.g. v4-8, or a pod slice, e.g. v4-32)
  install  copy this repository to every worker and pip install it with [tpu]
  run      run a config on every worker (--worker=all); the workdir must be gs://
  delete   tear the TPU VM down

Options:
  --name=NAME            TPU VM name (required)
  --zone=ZONE            GCP zone, e.g. us-central2-b (required)
  --project=PROJECT      GCP project (default: gcloud's current project)
  --accelerator=TYPE     create: accelerator type (default v4-8; v4-32 etc. is a pod slice)
  --version=RUNTIME      create: TPU software version (default tpu-ubuntu2204-base)
  --spot                 create: preemptible (spot) capacity; training resumes on rerun
  --config=FILE[:ARG]    run: config file, e.g. configs/cifar_final.py
  --workdir=gs://...     run: workdir on Cloud Storage (shared by all workers)
  --override=FLAG        run: extra --config.<field>=<value> (repeatable)
  --dry-run              print the commands without running them
  -h, --help             this help

Example:
  launch/tpu.sh create --name=nao --zone=us-central2-b --accelerator=v4-32
  launch/tpu.sh install --name=nao --zone=us-central2-b
  launch/tpu.sh run --name=nao --zone=us-central2-b --config=configs/cifar_final.py \
      --workdir=gs://my-bucket/naonet_a --override=--config.data.data_dir=gs://my-bucket/tfds
  launch/tpu.sh delete --name=nao --zone=us-central2-b

Data: every worker reads CIFAR from one tensorflow-datasets directory on
Cloud Storage, prepared once from any machine with the [tfds] extra:
  python -c "import tensorflow_datasets as tfds; \
      tfds.builder('cifar10', data_dir='gs://my-bucket/tfds').download_and_prepare()"
then pass --override=--config.data.data_dir=gs://my-bucket/tfds (the same for
cifar100). Pod slices: 'run' starts the command on every worker (--worker=all);
each worker feeds its share of the global batch, process 0 writes the workdir.
USAGE
}

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $# -ge 1 ]] || { usage; exit 2; }
case "$1" in -h|--help) usage; exit 0 ;; esac
action=$1; shift
case "$action" in create|install|run|delete) ;; *) die "unknown action '$action'; choose create, install, run or delete (see --help)." ;; esac

name="" zone="" project="" accelerator="v4-8" version="tpu-ubuntu2204-base" spot=0
config="" workdir="" dry_run=0 overrides=()
for arg in "$@"; do
  case "$arg" in
    --name=*) name=${arg#*=} ;;
    --zone=*) zone=${arg#*=} ;;
    --project=*) project=${arg#*=} ;;
    --accelerator=*) accelerator=${arg#*=} ;;
    --version=*) version=${arg#*=} ;;
    --spot) spot=1 ;;
    --config=*) config=${arg#*=} ;;
    --workdir=*) workdir=${arg#*=} ;;
    --override=*) overrides+=("${arg#*=}") ;;
    --dry-run) dry_run=1 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$arg' (see --help)." ;;
  esac
done

[[ -n "$name" ]] || die "--name=NAME is required."
[[ -n "$zone" ]] || die "--zone=ZONE is required."
[[ "$name" =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] || die "--name='$name': use lowercase letters, digits and '-'."
[[ "$accelerator" =~ ^v[0-9]+[a-z]*(-[a-z]+)?-[0-9]+$ ]] || die "--accelerator='$accelerator': expected a type like v4-8, v5litepod-16 or v5p-32."
check_overrides "${overrides[@]+"${overrides[@]}"}"

gcloud_tpu=(gcloud compute tpus tpu-vm)
where=(--zone="$zone")
[[ -n "$project" ]] && where+=(--project="$project")

case "$action" in
  create)
    echo "Will create TPU VM '$name' ($accelerator, $version) in $zone."
    extra=(); [[ $spot -eq 1 ]] && extra+=(--spot)
    run "${gcloud_tpu[@]}" create "$name" "${where[@]}" --accelerator-type="$accelerator" \
        --version="$version" "${extra[@]+"${extra[@]}"}"
    ;;
  install)
    repo=$(cd "$(dirname "$0")/.." && pwd)
    echo "Will copy $repo to every worker of '$name' and install it with [tpu,tfds]."
    run "${gcloud_tpu[@]}" scp --recurse "$repo" "$name":nao_jax "${where[@]}" --worker=all
    run "${gcloud_tpu[@]}" ssh "$name" "${where[@]}" --worker=all \
        --command="cd nao_jax && python3 -m venv .venv && .venv/bin/pip install -q -e '.[tpu,tfds]'"
    ;;
  run)
    check_config_file "$config"
    [[ "$workdir" == gs://* ]] || die "--workdir='$workdir': all workers must share it; use a gs:// path."
    command="cd nao_jax && .venv/bin/python -m nao_jax.main --config=$config --workdir=$workdir --distributed"
    for o in "${overrides[@]+"${overrides[@]}"}"; do command+=" $o"; done
    echo "Will run '$config' on all workers of '$name' with workdir $workdir (rerun to resume)."
    run "${gcloud_tpu[@]}" ssh "$name" "${where[@]}" --worker=all --command="$command"
    ;;
  delete)
    echo "Will delete TPU VM '$name' in $zone."
    run "${gcloud_tpu[@]}" delete "$name" "${where[@]}" --quiet
    ;;
esac
