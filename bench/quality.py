r"""Quality of the shipped models on held-out data, each against simple baselines.

Groove models are measured on the Groove MIDI Dataset's **test** split (used for nothing
else: no checkpoint or setting was chosen on it); the folk melody model on its held-out
hash split (the folk corpus has no test split, and that split chose nothing either).
Reconstructions decode the posterior mean greedily (hit if p > 0.5, mean velocity and
offset); samples decode z ~ N(0, I) at temperature 0.5.

* ``groove_4bar``: test loss and hit accuracy teacher-forced / free-running against the
  all-silent baseline, reconstruction hit F1, and samples against the test windows: hits
  per bar, per-instrument density, velocity and offset distributions (1-Wasserstein per
  feature; L1 between density vectors). Reference rows: the validation windows (what real
  data scores) and samples of the untrained model.
* ``groove_2bar_humanize``: velocity and offset MAE on the drummer's real hits, against
  the quantized input played at the training split's mean velocity and against
  per-instrument mean velocities (both with zero offsets).
* ``groove_2bar_tap_fixed_velocity`` (Drumify): hit F1 against the real performance,
  against the best single instrument playing every tap (chosen on the test split itself).
* ``groove_2bar_add_closed_hh`` (infill): closed hi-hat hit F1 and velocity MAE against
  the real hi-hat part, against steady 8th-note and 16th-note hi-hats.
* ``cat_mel_2bar_small``: teacher-forced and sampled (free-running) accuracy, as
  MusicVAE's Table 1, against always predicting the most common event.

Velocities are in MIDI units (0-127), offsets in 16th-note steps.

  python bench/quality.py                       # every shipped model
  python bench/quality.py --models groove_4bar --folder /tmp/registry --limit 256

Writes bench/results/quality.json (and, with ``--update_cards``, a Quality section in each
model's MODEL_CARD.md) and prints the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time
import warnings
from typing import Any

import jax
import numpy as np
from scipy import stats

warnings.filterwarnings("ignore", "Couldn.t find ffmpeg", RuntimeWarning)  # pydub, via note_seq

from flax_musicvae import inference
from flax_musicvae import input_pipeline
from flax_musicvae import pretrained
from flax_musicvae import train

ROOT = pathlib.Path(__file__).resolve().parents[1]
NUM_DRUMS = 9
CLOSED_HH = 2          # index of the closed hi-hat class (groove.ROLAND_DRUM_PITCH_CLASSES)
STEPS_PER_BAR = 16


# ----------------------------------------------------------------------------- measures


def f1(pred: np.ndarray, true: np.ndarray) -> float:
  """Hit F1 of boolean arrays (1.0 when both are empty)."""
  tp = np.sum(pred & true)
  denom = np.sum(pred) + np.sum(true)
  return float(2 * tp / denom) if denom else 1.0


def split_groove(tensors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``[..., 27]`` groove tensors -> hits (bool), velocities (0-127), offsets (16th steps)."""
  hits, vel, off = np.split(np.asarray(tensors, np.float32), 3, -1)
  return hits > 0.5, vel * 127.0, off / 2.0


def groove_features(tensors: np.ndarray) -> dict[str, np.ndarray]:
  """Distributions compared between samples and data (per window / per hit)."""
  hits, vel, off = split_groove(tensors)
  n, steps = hits.shape[:2]
  per_bar = hits.reshape(n, steps // STEPS_PER_BAR, -1).sum(-1).ravel()
  return {"hits_per_bar": per_bar.astype(np.float64), "density": hits.mean((0, 1)),
          "velocity": vel[hits], "offset": off[hits]}


def feature_distances(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
  out = {k: float(stats.wasserstein_distance(a[k], b[k])) if len(a[k]) and len(b[k])
         else float("nan") for k in ("hits_per_bar", "velocity", "offset")}
  out["density_l1"] = float(np.abs(a["density"] - b["density"]).sum())
  return out


def summary(feats: dict[str, np.ndarray]) -> dict[str, Any]:
  return {"hits_per_bar_mean": float(feats["hits_per_bar"].mean()),
          "velocity_mean": float(feats["velocity"].mean()) if len(feats["velocity"]) else None,
          "offset_std": float(feats["offset"].std()) if len(feats["offset"]) else None,
          "density": [round(float(d), 4) for d in feats["density"]]}


# ----------------------------------------------------------------------------- helpers


def limited(arrays: dict[str, np.ndarray], limit: int) -> dict[str, np.ndarray]:
  return {k: v[:limit] for k, v in arrays.items()} if limit else arrays


def evaluation(model: inference.MusicVAEModel, arrays: dict[str, np.ndarray], step: int
               ) -> dict[str, float]:
  """Loss and accuracy of both decoder passes (teacher-forced / free-running)."""
  metrics = train.evaluate_arrays(model.config, model.params, arrays, step)
  keys = ("loss", "r_loss", "kl_loss", "accuracy")
  return {f"{p}/{k}": round(metrics[f"{p}/{k}"], 6)
          for p in ("teacher_forced", "free_running") for k in keys}


def reconstruct(model: inference.MusicVAEModel, arrays: dict[str, np.ndarray]) -> np.ndarray:
  """Greedy decodes of the posterior means of ``arrays``' inputs."""
  controls = arrays["controls"] if arrays["controls"].shape[-1] else None
  _, mu, _ = model.encode_tensors(arrays["inputs"], arrays["lengths"], controls)
  return model.decode_to_tensors(mu, None, controls)


def mae(pred: np.ndarray, true: np.ndarray, mask: np.ndarray) -> float:
  return float(np.abs(pred - true)[mask].mean())


# ----------------------------------------------------------------------------- per task


def groove_4bar(model, test, validation, train_split, step, num_samples) -> dict[str, Any]:
  del train_split
  hits_true = split_groove(test["outputs"])[0]
  out: dict[str, Any] = {"test": evaluation(model, test, step)}
  out["baseline_all_silent"] = {"accuracy": round(float(1 - hits_true.mean()), 6),
                                "hit_f1": 0.0}
  recon = split_groove(reconstruct(model, test))[0]
  out["reconstruction_hit_f1"] = round(f1(recon, hits_true), 4)
  data = groove_features(test["outputs"])
  rows = {"model samples (T=0.5)": model.decode_to_tensors(model.sample_z(num_samples), 0.5),
          "untrained model samples (T=0.5)": inference.MusicVAEModel.init_random(
              model.config, max_batch_size=model.max_batch_size).decode_to_tensors(
                  model.sample_z(num_samples), 0.5),
          "validation windows (real data)": validation["outputs"]}
  out["samples_vs_test"] = {
      name: {"distance": {k: round(v, 4) for k, v in feature_distances(
          groove_features(t), data).items()}, "summary": summary(groove_features(t))}
      for name, t in rows.items()}
  out["test_summary"] = summary(data)
  return out


def humanize(model, test, validation, train_split, step, num_samples) -> dict[str, Any]:
  del validation, num_samples
  hits, vel, off = split_groove(test["outputs"])
  _, p_vel, p_off = split_groove(reconstruct(model, test))
  t_hits, t_vel, _ = split_groove(train_split["outputs"])
  per_drum = np.array([t_vel[..., i][t_hits[..., i]].mean() for i in range(NUM_DRUMS)])
  zero = np.zeros_like(off)
  rows = {"model": (p_vel, p_off),
          "quantized input at the mean velocity": (np.full_like(vel, t_vel[t_hits].mean()), zero),
          "per-instrument mean velocity": (np.broadcast_to(per_drum, vel.shape), zero)}
  return {"test": evaluation(model, test, step), "hits": int(hits.sum()),
          "velocity_mae": {k: round(mae(v, vel, hits), 3) for k, (v, _) in rows.items()},
          "offset_mae": {k: round(mae(o, off, hits), 4) for k, (_, o) in rows.items()}}


def drumify(model, test, validation, train_split, step, num_samples) -> dict[str, Any]:
  del validation, train_split, num_samples
  hits = split_groove(test["outputs"])[0]
  taps = split_groove(test["inputs"])[0].any(-1)
  pred = split_groove(reconstruct(model, test))[0]
  single = {}
  for i in range(NUM_DRUMS):
    guess = np.zeros_like(hits)
    guess[..., i] = taps
    single[i] = f1(guess, hits)
  best = max(single, key=single.get)
  return {"test": evaluation(model, test, step), "hit_f1": {
      "model": round(f1(pred, hits), 4),
      f"best single instrument (class {best}) on every tap": round(single[best], 4)},
      "single_instrument_f1": {str(i): round(v, 4) for i, v in single.items()}}


def infill(model, test, validation, train_split, step, num_samples) -> dict[str, Any]:
  del validation, num_samples
  hits, vel, _ = split_groove(test["outputs"])
  p_hits, p_vel, _ = split_groove(reconstruct(model, test))
  t_hits, t_vel, _ = split_groove(train_split["outputs"])
  hh, hh_vel = hits[..., CLOSED_HH], vel[..., CLOSED_HH]
  mean_vel = t_vel[..., CLOSED_HH][t_hits[..., CLOSED_HH]].mean()
  grid = np.arange(hh.shape[1])
  rows = {"model": (p_hits[..., CLOSED_HH], p_vel[..., CLOSED_HH]),
          "8th-note hi-hats": (np.broadcast_to(grid % 2 == 0, hh.shape),
                               np.full_like(hh_vel, mean_vel)),
          "16th-note hi-hats": (np.ones_like(hh), np.full_like(hh_vel, mean_vel))}
  return {"test": evaluation(model, test, step), "hihat_hits": int(hh.sum()),
          "hihat_f1": {k: round(f1(h, hh), 4) for k, (h, _) in rows.items()},
          "hihat_velocity_mae": {k: round(mae(v, hh_vel, hh), 3) for k, (_, v) in rows.items()}}


def melody(model, test, validation, train_split, step, num_samples) -> dict[str, Any]:
  del validation, num_samples
  target = test["outputs"].argmax(-1)
  mask = np.arange(target.shape[1]) < test["lengths"][:, None]
  common = np.bincount(train_split["outputs"].argmax(-1).ravel()).argmax()
  return {"test": evaluation(model, test, step),
          "baseline_most_common_event": {"event": int(common),
                                         "accuracy": round(float((target == common)[mask].mean()), 6)}}


def task_of(config) -> tuple[str, Any]:
  kw = config.data.converter_kwargs
  if config.data.converter == "groove":
    if kw.get("humanize"):
      return "humanize", humanize
    if kw.get("tapify"):
      return "drumify", drumify
    if kw.get("add_instruments"):
      return "infill", infill
    return "groove", groove_4bar
  if config.data.converter == "melody":
    return "melody", melody
  raise ValueError(f"no quality measure for converter {config.data.converter!r}")


def measure(name: str, folder: str | None, limit: int, num_samples: int) -> dict[str, Any]:
  config, params = pretrained.load(name, folder)
  info = pretrained.training_info(name, folder)
  model = inference.MusicVAEModel(config, params, max_batch_size=64)
  kind, fn = task_of(config)
  held_out = "test" if config.data.dataset == "groove" else "validation"
  t0 = time.perf_counter()
  test = limited(input_pipeline.load_split(config, held_out), limit)
  validation = input_pipeline.load_split(config, "validation") if kind == "groove" else None
  train_split = input_pipeline.load_split(config, "train") if kind != "groove" else None
  result = fn(model, test, validation, train_split, info["step"], num_samples)
  return {"task": kind, "held_out_split": held_out, "examples": len(test["inputs"]),
          "trained": info, **result, "seconds": round(time.perf_counter() - t0, 1)}


def card_section(result: dict[str, Any]) -> str:
  """The model card's quality section: held-out numbers, baselines beside the model."""
  lines = [f"Measured by `python bench/quality.py` on the {result['held_out_split']} split "
           f"({result['examples']:,} windows; nothing was chosen on it).", "",
           "| measure | value |", "|---|---|"]
  for k, v in result["test"].items():
    lines.append(f"| {k.replace('/', ' ')} | {v:.4g} |")
  for key, value in result.items():
    if isinstance(value, dict) and key not in ("test", "trained", "samples_vs_test",
                                                "single_instrument_f1", "test_summary"):
      for name, v in value.items():
        if isinstance(v, (int, float)):
          lines.append(f"| {key.replace('_', ' ')}: {name} | {v:.4g} |")
    elif isinstance(value, float) and key != "seconds":
      lines.append(f"| {key.replace('_', ' ')} | {value:.4g} |")
  for name, row in result.get("samples_vs_test", {}).items():
    d = row["distance"]
    lines.append(f"| {name} vs test: Wasserstein hits/bar, velocity, offset; density L1 | "
                 f"{d['hits_per_bar']:.3g}, {d['velocity']:.3g}, {d['offset']:.3g}; "
                 f"{d['density_l1']:.3g} |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--models", default="", help="comma-separated names (default: all)")
  parser.add_argument("--folder", default=None, help="registry folder (default: the package's)")
  parser.add_argument("--limit", type=int, default=0, help="first N held-out windows (0: all)")
  parser.add_argument("--num_samples", type=int, default=512)
  parser.add_argument("--output", default=str(ROOT / "bench/results/quality.json"))
  parser.add_argument("--update_cards", action="store_true",
                      help="write each model's numbers into its MODEL_CARD.md (Quality)")
  args = parser.parse_args()
  names = args.models.split(",") if args.models else pretrained.available(args.folder)
  load0 = os.getloadavg()
  results = {"jax": jax.__version__, "machine": platform.processor() or platform.machine(),
             "load_average_at_start": load0, "models": {}}
  for name in names:
    results["models"][name] = measure(name, args.folder, args.limit, args.num_samples)
    print(json.dumps({name: results["models"][name]}, indent=1))
    if args.update_cards:
      pretrained.set_card_section(name, "Quality", card_section(results["models"][name]),
                                  args.folder)
  results["load_average_at_end"] = os.getloadavg()
  pathlib.Path(args.output).write_text(json.dumps(results, indent=1) + "\n")
  print(f"wrote {args.output}")


if __name__ == "__main__":
  main()
