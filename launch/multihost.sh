#!/usr/bin/env bash
# Multi-host data-parallel training: one process per host, all running the same command.
# Every process calls jax.distributed.initialize() (--distributed), reads its own rows of
# each global batch (jax.process_index()), and the jitted step spans every device of every
# host. Process 0 writes config.json, metrics and TensorBoard events; all take part in
# checkpointing, so WORKDIR must be storage every host sees (NFS, Filestore, gcsfuse).
#
#   launch/multihost.sh tpu    TPU_NAME ZONE WORKDIR [--config.flag=value ...]
#       Cloud TPU VM slice (e.g. v4-32): runs on all workers over gcloud ssh; JAX finds the
#       slice's coordinator itself. The repo must be at ~/flax-musicvae on every worker.
#   launch/multihost.sh slurm  WORKDIR [--config.flag=value ...]
#       Inside a SLURM allocation (sbatch --nodes=N --ntasks-per-node=1 --gpus-per-node=G):
#       one task per node via srun; JAX reads the SLURM environment.
#   launch/multihost.sh manual COORDINATOR_HOST:PORT NUM_PROCESSES PROCESS_ID WORKDIR [...]
#       Any other cluster: run this on every host with its own PROCESS_ID (0 .. N-1).
#
# CONFIG (default configs/groove_4bar.py) and PYTHON (default python) can be overridden
# from the environment; extra arguments go to flax_musicvae.main unchanged. The global
# batch (--config.train.batch_size) must be divisible by the total number of devices.
set -euo pipefail

CONFIG="${CONFIG:-configs/groove_4bar.py}"
PYTHON="${PYTHON:-python}"
usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

[[ $# -ge 1 ]] || usage
mode="$1"; shift
case "$mode" in
  tpu)
    [[ $# -ge 3 ]] || usage
    name="$1"; zone="$2"; workdir="$3"; shift 3
    extra=$(printf ' %q' "$@")
    gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all --command \
      "cd ~/flax-musicvae && $PYTHON -m flax_musicvae.main --distributed \
       --config=$CONFIG --workdir=$workdir$extra"
    ;;
  slurm)
    [[ $# -ge 1 ]] || usage
    workdir="$1"; shift
    srun --ntasks-per-node=1 "$PYTHON" -m flax_musicvae.main --distributed \
      --config="$CONFIG" --workdir="$workdir" "$@"
    ;;
  manual)
    [[ $# -ge 4 ]] || usage
    coordinator="$1"; num_processes="$2"; process_id="$3"; workdir="$4"; shift 4
    exec "$PYTHON" -m flax_musicvae.main --distributed \
      --coordinator_address="$coordinator" --num_processes="$num_processes" \
      --process_id="$process_id" --config="$CONFIG" --workdir="$workdir" "$@"
    ;;
  *) usage ;;
esac
