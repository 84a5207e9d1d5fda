#!/usr/bin/env bash
# Run a nao_jax config on the GPUs of one host (data parallel over all of them with pmap).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: launch/gpu.sh --config=FILE[:ARG] --workdir=DIR [options]

Trains on every visible GPU of this host (jax.pmap over all local devices);
rerunning the same command resumes from DIR/checkpoints. Several hosts: run the
same command on each with --hosts, --host-id and --coordinator (or, under
SLURM, just --distributed); the workdir must be shared (gs:// or NFS).

Options:
  --config=FILE[:ARG]  config file, e.g. configs/cifar_final.py
  --workdir=DIR        workdir (local path or gs://)
  --gpus=LIST          GPUs to use, e.g. 0,1,2,3 (default: all)
  --bf16               bfloat16 compute with float32 parameters
  --override=FLAG      extra --config.<field>=<value> (repeatable)
  --distributed        a multi-host run whose hosts JAX detects (SLURM, ...)
  --coordinator=H:P    multi-host: host 0's address and a free port
  --hosts=N            multi-host: the number of hosts
  --host-id=I          multi-host: this host, 0..N-1
  --dry-run            print the command without running it
  -h, --help           this help

Install first: pip install -e ".[cuda12,tfds]"
Example: launch/gpu.sh --config=configs/cifar_final.py --workdir=/data/naonet_a --gpus=0,1 --bf16
Two hosts (on host 1, --host-id=1):
  launch/gpu.sh --config=configs/cifar_final.py --workdir=gs://bucket/naonet_a \
      --coordinator=10.0.0.2:12345 --hosts=2 --host-id=0
USAGE
}

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

config="" workdir="" gpus="" bf16=0 dry_run=0 overrides=()
distributed=0 coordinator="" hosts="" host_id=""
for arg in "$@"; do
  case "$arg" in
    --config=*) config=${arg#*=} ;;
    --workdir=*) workdir=${arg#*=} ;;
    --gpus=*) gpus=${arg#*=} ;;
    --bf16) bf16=1 ;;
    --override=*) overrides+=("${arg#*=}") ;;
    --distributed) distributed=1 ;;
    --coordinator=*) coordinator=${arg#*=} ;;
    --hosts=*) hosts=${arg#*=} ;;
    --host-id=*) host_id=${arg#*=} ;;
    --dry-run) dry_run=1 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$arg' (see --help)." ;;
  esac
done

check_config_file "$config"
[[ -n "$workdir" ]] || die "--workdir=DIR is required."
[[ -z "$gpus" || "$gpus" =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--gpus='$gpus': expected a list like 0,1,2,3."
if [[ -n "$coordinator$hosts$host_id" ]]; then
  [[ "$coordinator" =~ ^[^:]+:[0-9]+$ ]] || die "--coordinator='$coordinator': expected HOST:PORT."
  [[ "$hosts" =~ ^[1-9][0-9]*$ ]] || die "--hosts='$hosts': expected the number of hosts."
  [[ "$host_id" =~ ^[0-9]+$ && "$host_id" -lt "$hosts" ]] \
    || die "--host-id='$host_id': expected 0..$((hosts - 1))."
fi
check_overrides "${overrides[@]+"${overrides[@]}"}"

command=(python -m nao_jax.main --config="$config" --workdir="$workdir")
[[ $bf16 -eq 1 ]] && command+=(--dtype=bfloat16)
if [[ -n "$coordinator" ]]; then
  command+=(--distributed --coordinator_address="$coordinator" --num_processes="$hosts"
            --process_id="$host_id")
elif [[ $distributed -eq 1 ]]; then
  command+=(--distributed)
fi
command+=("${overrides[@]+"${overrides[@]}"}")
env_prefix=()
[[ -n "$gpus" ]] && env_prefix=(env CUDA_VISIBLE_DEVICES="$gpus")

echo "Will train '$config' on GPUs ${gpus:-all} with workdir $workdir."
printf '+'; printf ' %q' "${env_prefix[@]+"${env_prefix[@]}"}" "${command[@]}"; printf '\n'
if [[ $dry_run -eq 0 ]]; then
  exec "${env_prefix[@]+"${env_prefix[@]}"}" "${command[@]}"
fi
