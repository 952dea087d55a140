#!/usr/bin/env bash
# GPU/TPU checks in one script, under 5 minutes of device time: training throughput and MFU
# of groove_4bar and hierdec_mel_16bar at batch 512 in float32 and bfloat16 (bench_train.py,
# synthetic windows of the real shapes), the LSTM/model parity tests on the device, and the
# PyTorch peer (cuDNN nn.LSTM) beside it. Writes one results file,
# bench/results/accelerator_<backend>.json (and $OUT/ when set, for the device tool).
#
# Two steps, because the accelerator machine reaches no network and sees only the work tree:
#   bash bench/accelerator_suite.sh --prepare   # here: .device/ = wheels the device image
#                                               # lacks + the goldens + the PyTorch peer
#   bash bench/accelerator_suite.sh             # there (device tool: carry [".device"])
# --cpu runs the same suite on this machine's CPU with tiny step counts (a smoke test).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
DEV="$ROOT/.device"
SHARED="${FLAX_MUSICVAE_SHARED:-$ROOT/../shared}"

if [ "${1:-}" = "--prepare" ]; then
  mkdir -p "$DEV/wheels" "$DEV/shared/reference" "$DEV/shared/peers"
  grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
  # The device image has jax/flax/optax/orbax/torch; these are the project's other needs.
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$DEV/wheels" ml-collections==1.1.0 note-seq==0.0.5 pretty-midi==0.2.10 mido==1.3.3 \
    absl-py==2.3.1 2>&1 | tail -2 || true
  cp -r "$SHARED/reference/golden" "$DEV/shared/reference/" 2>/dev/null || true
  cp -r "$SHARED/peers/torch" "$DEV/shared/peers/" 2>/dev/null || true
  du -sh "$DEV"
  exit 0
fi

CPU=0; [ "${1:-}" = "--cpu" ] && CPU=1
if [ "$CPU" = 1 ]; then
  export JAX_PLATFORMS=cpu
  PY="${PYTHON:-python}"; STEPS_SMALL=1; STEPS_BIG=1; BATCH=8
else
  PY="${PYTHON:-python3}"; STEPS_SMALL=30; STEPS_BIG=10; BATCH=512
  if ls "$DEV"/wheels/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$DEV"/wheels/*.whl
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
  fi
  [ -d "$DEV/shared" ] && SHARED="$DEV/shared"
fi
export PYTHONPATH="$ROOT:${PYTHONPATH:-}" FLAX_MUSICVAE_SHARED="$SHARED" PYTHONUNBUFFERED=1
RES="$(mktemp -d)"
LOG="$RES/suite.log"
BACKEND="$("$PY" -c 'import jax; print(jax.default_backend())')"
echo "backend $BACKEND, devices: $("$PY" -c 'import jax; print(jax.devices())')" | tee -a "$LOG"

for cfg in groove_4bar hierdec_mel_16bar; do
  steps=$STEPS_SMALL; [ "$cfg" = hierdec_mel_16bar ] && steps=$STEPS_BIG
  for dtype in float32 bfloat16; do
    "$PY" bench/bench_train.py --config "$cfg" --batch_size "$BATCH" --compute_dtype "$dtype" \
      --steps "$steps" --warmup 2 --synthetic --output "$RES/train_${cfg}_${dtype}.json" \
      > "$RES/train_${cfg}_${dtype}.log" 2>&1 \
      && echo "$cfg $dtype: ok" | tee -a "$LOG" \
      || { echo "$cfg $dtype: FAILED" | tee -a "$LOG"; tail -5 "$RES/train_${cfg}_${dtype}.log" >> "$LOG"; }
  done
done

"$PY" -m pytest -q -p no:cacheprovider tests/test_lstm.py tests/test_models_parity.py \
  tests/test_mixed_precision.py -k "not real_groove" > "$RES/parity.log" 2>&1 \
  && echo "parity tests: $(tail -1 "$RES/parity.log")" | tee -a "$LOG" \
  || echo "parity tests FAILED: $(tail -1 "$RES/parity.log")" | tee -a "$LOG"

TORCH_PEER="$SHARED/peers/torch/groovae_torch.py"
if [ -f "$TORCH_PEER" ] && "$PY" -c 'import torch' 2>/dev/null; then
  modes="eager,eager_bf16"; [ "$CPU" = 1 ] && modes="eager"
  "$PY" "$TORCH_PEER" --steps "$STEPS_SMALL" --warmup 2 --batch_size "$BATCH" --mode "$modes" \
    --json "$RES/torch.json" > "$RES/torch.log" 2>&1 \
    && echo "pytorch peer: ok" | tee -a "$LOG" || echo "pytorch peer: FAILED" | tee -a "$LOG"
else
  echo "pytorch peer: skipped (no torch or no $TORCH_PEER)" | tee -a "$LOG"
fi

OUTFILE="$ROOT/bench/results/accelerator_${BACKEND}.json"
[ "$CPU" = 1 ] && OUTFILE="$RES/accelerator_cpu_smoke.json"
"$PY" - "$RES" "$OUTFILE" "$BACKEND" <<'EOF'
import glob, json, os, sys
res, out, backend = sys.argv[1:]
summary = {"backend": backend, "train": {}, "log": open(os.path.join(res, "suite.log")).read()}
for f in sorted(glob.glob(os.path.join(res, "train_*.json"))):
  r = json.load(open(f))
  summary["train"][f"{r['config']}_{r['compute_dtype']}_b{r['batch_size']}"] = {
      k: r[k] for k in ("examples_per_second", "fraction_of_peak", "final_loss", "devices")}
if os.path.exists(os.path.join(res, "torch.json")):
  summary["torch"] = json.load(open(os.path.join(res, "torch.json")))["results"]
summary["parity_tail"] = open(os.path.join(res, "parity.log")).read().strip().splitlines()[-1:]
json.dump(summary, open(out, "w"), indent=1)
print(json.dumps(summary["train"], indent=1))
print("wrote", out)
EOF
[ -n "${OUT:-}" ] && cp -r "$RES"/. "$OUT"/ || true
