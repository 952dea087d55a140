#!/bin/bash
# Trains the shipped models on this machine (issue 14): two lanes, one CPU core each, at low
# priority, so that other work on the machine keeps its speed. Each run stops at its wall-clock
# budget through SIGTERM (the trainer saves the current step and exits 143) and resumes from its
# last checkpoint when run again. Runs and their logs go to $RUNS (default /work/runs).
#
#   bash bench/train_pretrained.sh                 # both lanes, in the background
#   bash bench/train_pretrained.sh lane_2bar       # one lane
#   MINUTES_4BAR=120 MINUTES_2BAR=22 bash bench/train_pretrained.sh
#
# `vs_magenta` trains the original (../shared/peers, installed by its install.sh) and a fresh run
# of ours side by side, one core each, for the equal-wall-clock comparison (bench/vs_magenta.py);
# run it while no lane runs (bash bench/train_pretrained.sh vs_magenta).
set -u
cd "$(dirname "$0")/.."
RUNS=${RUNS:-/work/runs}
PY=${PY:-.venv/bin/python}
MINUTES_4BAR=${MINUTES_4BAR:-120}
MINUTES_2BAR=${MINUTES_2BAR:-22}
MINUTES_MEL=${MINUTES_MEL:-20}
MINUTES_MAGENTA=${MINUTES_MAGENTA:-25}
FOLK=${FOLK:-$RUNS/folk.tfrecord}
PEERS=${PEERS_HOME:-$HOME/.cache/musicvae-peers}
mkdir -p "$RUNS"

# train CORE MINUTES NAME CONFIG [overrides...]
train() {
  local core=$1 minutes=$2 name=$3 config=$4; shift 4
  echo "$(date -u +%FT%TZ) start $name (core $core, ${minutes} min)" >> "$RUNS/$name.log"
  timeout -s TERM "${minutes}m" nice -n 10 taskset -c "$core" "$PY" -m flax_musicvae.main \
    --config="$config" --workdir="$RUNS/$name" --config.train.batch_size=64 \
    --config.train.num_train_steps=200000 "$@" >> "$RUNS/$name.log" 2>&1
  local rc=$?  # 124: stopped at its budget (the trainer saved its last step)
  echo "$(date -u +%FT%TZ) stop $name rc=$rc" >> "$RUNS/$name.log"
}

# magenta CORE MINUTES: Magenta's music_vae_train, groovae_4bar at batch 64, Groove train split.
magenta() {
  local core=$1 minutes=$2 log="$RUNS/magenta_groove_4bar.log"
  echo "$(date -u +%FT%TZ) start magenta_groove_4bar (core $core, ${minutes} min)" >> "$log"
  TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=1 timeout -s TERM "${minutes}m" nice -n 10 \
    taskset -c "$core" "$PEERS/magenta/venv/bin/python" "$PEERS/magenta/music_vae_train_steplog.py" \
    --config=groovae_4bar --mode=train --run_dir="$RUNS/magenta_groove_4bar" \
    --examples_path="$PEERS/magenta/data/groove_train.tfrecord" --num_steps=200000 \
    --hparams=batch_size=64 >> "$log" 2>&1
  local rc=$?
  echo "$(date -u +%FT%TZ) stop magenta_groove_4bar rc=$rc" >> "$log"
}

# vs_magenta MINUTES: the equal-wall-clock pair, concurrently: Magenta on core 1, a fresh run
# of ours on core 0 (same config and batch; a checkpoint every 100 steps and no evaluation
# during training, like Magenta's; bench/vs_magenta.py evaluates both afterwards).
vs_magenta() {
  local minutes=$1
  magenta 1 "$minutes" &
  train 0 "$minutes" vs_magenta_groove_4bar configs/groove_4bar.py \
    --config.train.eval_every_steps=1000000 --config.train.checkpoint_every_steps=100 \
    --config.train.checkpoints_to_keep=1000 &
  wait
}

lane_4bar() {
  train 0 "$MINUTES_4BAR" groove_4bar configs/groove_4bar.py \
    --config.train.eval_every_steps=500 --config.train.checkpoint_every_steps=500
}

lane_2bar() {
  local every="--config.train.eval_every_steps=250 --config.train.checkpoint_every_steps=250"
  train 1 "$MINUTES_2BAR" groove_2bar_humanize configs/groove_2bar_humanize.py $every
  train 1 "$MINUTES_2BAR" groove_2bar_tap_fixed_velocity configs/groove_2bar_tap_fixed_velocity.py $every
  train 1 "$MINUTES_2BAR" groove_2bar_add_closed_hh configs/groove_2bar_add_closed_hh.py $every
  [ -s "$FOLK" ] || nice -n 10 taskset -c 1 "$PY" -m pipelines.folk_melodies --output_file="$FOLK" \
    --report="$RUNS/folk_report.json" --no_progress >> "$RUNS/folk.log" 2>&1
  train 1 "$MINUTES_MEL" cat_mel_2bar_small configs/cat_mel_2bar_small.py $every \
    --config.data.dataset=folk --config.data.path="$FOLK"
}

if [ $# -eq 0 ]; then set -- lane_4bar lane_2bar; fi
for lane in "$@"; do
  if [ "$lane" = vs_magenta ]; then vs_magenta "$MINUTES_MAGENTA" & else "$lane" & fi
done
wait
