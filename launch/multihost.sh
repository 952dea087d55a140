#!/usr/bin/env bash
#: Multi-host data-parallel training: one process per host, all running the same command.
#: Every process calls jax.distributed.initialize() (--distributed), reads only its own rows
#: of each global batch, and the jitted step spans every device of every host. Process 0
#: writes config.json, metrics and TensorBoard events; all take part in checkpointing, so
#: WORKDIR must be storage every host sees: gs://bucket/path, NFS, Filestore.
#:
#: Usage: launch/multihost.sh [--dry-run] MODE ARGS... [--config.section.field=value ...]
#:
#:   tpu-install TPU_NAME ZONE
#:       Installs flax-musicvae (and jax[tpu]) on every worker of a Cloud TPU VM slice in
#:       one `gcloud ... ssh --worker=all` command: REPO (a git URL) is cloned to
#:       ~/flax-musicvae, or, without REPO, this checkout is copied there first (git archive).
#:   tpu TPU_NAME ZONE WORKDIR [flags]
#:       Installs (skip with INSTALL=0), then trains on every worker; JAX finds the slice's
#:       coordinator itself.
#:   slurm WORKDIR [flags]
#:       Inside a SLURM allocation (sbatch --nodes=N --ntasks-per-node=1 --gpus-per-node=G):
#:       one task per node via srun; JAX reads the SLURM environment.
#:   manual COORDINATOR_HOST:PORT NUM_PROCESSES PROCESS_ID WORKDIR [flags]
#:       Any other cluster: run this on every host with its own PROCESS_ID (0 .. N-1).
#:
#: --dry-run (or DRY_RUN=1) prints the commands instead of running them. Environment:
#: CONFIG (default configs/groove_4bar.py), PYTHON (default python), REPO, JAX_TPU (default
#: "jax[tpu]==0.10.2"), INSTALL. The Groove data is downloaded on each host when
#: --config.data.path is missing there; a gs:// data.path is copied to each host once.
#: The global batch (--config.train.batch_size) must divide by the total device count.
set -euo pipefail

CONFIG="${CONFIG:-configs/groove_4bar.py}"
PYTHON="${PYTHON:-python}"
JAX_TPU="${JAX_TPU:-jax[tpu]==0.10.2}"
LIBTPU_FIND_LINKS="https://storage.googleapis.com/jax-releases/libtpu_releases.html"
DRY_RUN="${DRY_RUN:-0}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() { sed -n 's/^#: \{0,1\}//p' "${BASH_SOURCE[0]}"; }
fail() { echo "error: $*" >&2; echo "run launch/multihost.sh --help for usage" >&2; exit 2; }
# Runs a command, or prints it (shell-quoted) with --dry-run.
run() {
  if [[ "$DRY_RUN" == 1 ]]; then printf '%q ' "$@" | sed 's/ $//'; echo; else "$@"; fi
}
need() { [[ $1 -ge $2 ]] || fail "$mode needs $3"; }

tpu_ssh() {  # tpu_ssh NAME ZONE COMMAND: one command on every worker of the slice
  run gcloud compute tpus tpu-vm ssh "$1" --zone "$2" --worker=all --command "$3"
}

tpu_install() {  # tpu_install NAME ZONE
  local name="$1" zone="$2" fetch
  if [[ -n "${REPO:-}" ]]; then
    fetch="if [ -d ~/flax-musicvae/.git ]; then git -C ~/flax-musicvae pull -q; \
else git clone -q $(printf '%q' "$REPO") ~/flax-musicvae; fi"
  else
    local archive="${TMPDIR:-/tmp}/flax-musicvae-$$.tar.gz"
    run git -C "$HERE/.." archive --format=tar.gz --prefix=flax-musicvae/ -o "$archive" HEAD
    run gcloud compute tpus tpu-vm scp "$archive" "$name:~/flax-musicvae.tar.gz" \
      --zone "$zone" --worker=all
    fetch="rm -rf ~/flax-musicvae && tar -xzf ~/flax-musicvae.tar.gz -C ~"
  fi
  tpu_ssh "$name" "$zone" "set -e; $fetch; $PYTHON -m pip install -q -e ~/flax-musicvae \
$(printf '%q' "$JAX_TPU") -f $LIBTPU_FIND_LINKS"
}

[[ $# -ge 1 ]] || { usage >&2; exit 2; }
case "$1" in -h|--help) usage; exit 0 ;; --dry-run) DRY_RUN=1; shift ;; esac
[[ $# -ge 1 ]] || { usage >&2; exit 2; }
mode="$1"; shift
case "$mode" in
  tpu-install)
    need $# 2 "TPU_NAME ZONE"
    tpu_install "$1" "$2"
    ;;
  tpu)
    need $# 3 "TPU_NAME ZONE WORKDIR"
    name="$1"; zone="$2"; workdir="$3"; shift 3
    [[ "${INSTALL:-1}" == 0 ]] || tpu_install "$name" "$zone"
    extra=""
    [[ $# -eq 0 ]] || extra=$(printf ' %q' "$@")
    tpu_ssh "$name" "$zone" "cd ~/flax-musicvae && $PYTHON -m flax_musicvae.main \
--distributed --config=$(printf '%q' "$CONFIG") --workdir=$(printf '%q' "$workdir")$extra"
    ;;
  slurm)
    need $# 1 "WORKDIR"
    workdir="$1"; shift
    run srun --ntasks-per-node=1 "$PYTHON" -m flax_musicvae.main --distributed \
      --config="$CONFIG" --workdir="$workdir" "$@"
    ;;
  manual)
    need $# 4 "COORDINATOR_HOST:PORT NUM_PROCESSES PROCESS_ID WORKDIR"
    coordinator="$1"; num_processes="$2"; process_id="$3"; workdir="$4"; shift 4
    run "$PYTHON" -m flax_musicvae.main --distributed \
      --coordinator_address="$coordinator" --num_processes="$num_processes" \
      --process_id="$process_id" --config="$CONFIG" --workdir="$workdir" "$@"
    ;;
  *) fail "unknown mode '$mode' (tpu-install, tpu, slurm or manual)" ;;
esac
