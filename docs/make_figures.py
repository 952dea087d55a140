r"""Regenerates every figure, table and sample of the write-up from training runs.

  python docs/make_figures.py --runs_dir=/tmp/docs_runs --out=docs \
      --extra_runs=/tmp/accept_g4

``runs_dir`` holds workdirs of ``flax_musicvae.main`` (each with ``config.json`` and
``metrics.jsonl``). Runs of ``groovae_4bar`` are the KL sweep; the one named by
``--generation_run`` (default: the last 4-bar run in name order) is used for samples,
interpolations and the latent projection; runs of ``groovae_2bar_humanize`` and
``groovae_2bar_tap_fixed_velocity`` give the task examples; runs of the categorical
configs in ``TABLE1_RUNS`` (2-bar drums / melody, 16-bar flat and hierarchical melody,
usually passed with ``--extra_runs``) fill the reproduction table and get curves. Data statistics come from
the Groove pipeline (``flax_musicvae.pipelines.groove.load_groove_split``, cached arrays),
for the dataset named in the runs' configs or ``--groove_dir``. Matplotlib (Agg) only.
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import sys
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from flax_musicvae import inference  # pylint: disable=wrong-import-position
from flax_musicvae import input_pipeline  # pylint: disable=wrong-import-position
from flax_musicvae import render  # pylint: disable=wrong-import-position
# pylint: disable-next=wrong-import-position
from flax_musicvae.pipelines import groove as groove_pipeline

DRUM_NAMES = ("kick", "snare", "closed hh", "open hh", "low tom", "mid tom", "high tom",
              "crash", "ride")
TEMPERATURES = (0.1, 0.3, 0.5, 0.75, 1.0, 1.5)
#: MusicVAE paper Table 1 as given in the reference notes (section 2.1, unverified
#: against the PDF): (teacher-forced flat, TF hierarchical, sampling flat, sampling hier).
PAPER_TABLE1 = {
    "2-bar drums": (0.979, None, 0.917, None),
    "2-bar melody": (0.986, None, 0.951, None),
    "16-bar melody": (0.883, 0.919, 0.620, 0.812),
    "16-bar drums": (0.884, 0.928, 0.549, 0.879),
}


# ------------------------------------------------------------------------------ runs


class Run:
  """One workdir: its config and its metrics per split (lists of dicts by step)."""

  def __init__(self, workdir: pathlib.Path):
    self.workdir = workdir
    self.name = workdir.name
    self.config = inference.load_config(workdir)
    self.metrics: dict[str, list[dict]] = collections.defaultdict(list)
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
      if line.strip():
        row = json.loads(line)
        self.metrics[row["split"]].append(row)

  def series(self, split: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [r for r in self.metrics[split] if key in r]
    return np.array([r["step"] for r in rows]), np.array([r[key] for r in rows])

  def last(self, split: str) -> dict:
    return self.metrics[split][-1] if self.metrics[split] else {}

  def has_checkpoint(self) -> bool:
    return any((self.workdir / "checkpoints").glob("[0-9]*"))


def find_runs(runs_dir: pathlib.Path, extra: Sequence[str] = ()) -> list[Run]:
  dirs = sorted(p.parent for p in runs_dir.glob("*/metrics.jsonl"))
  dirs += [pathlib.Path(e) for e in extra if (pathlib.Path(e) / "metrics.jsonl").exists()]
  return [Run(d) for d in dirs if (d / "config.json").exists()]


def runs_named(runs: Sequence[Run], config_name: str) -> list[Run]:
  return [r for r in runs if r.config.name == config_name]


# ------------------------------------------------------------------------------ data


def groove_split(config, split: str, groove_dir: str | None = None) -> dict[str, np.ndarray]:
  """Arrays + metadata of one split, as training saw them (same converter/mode/seed)."""
  data = config.data
  mode = "train" if split == "train" else "eval"
  return groove_pipeline.load_groove_split(
      input_pipeline.resolve_path(groove_dir or data.path), split,
      input_pipeline.build_converter(data), input_pipeline.resolve_path(data.cache_dir),
      mode=mode, seed=config.train.seed)


def primary_style(styles: np.ndarray) -> np.ndarray:
  return np.array([s.split("/")[0] for s in styles])


def dataset_stats(groove_dir: pathlib.Path, splits: dict[str, dict[str, np.ndarray]]
                  ) -> dict[str, Any]:
  """File-level (info.csv) and example-level (pipeline) counts per split."""
  index = groove_pipeline.read_split_index(groove_dir)
  out: dict[str, Any] = {}
  for split, arrays in splits.items():
    rows = index.get(split, [])
    hits = arrays["outputs"][..., :9]
    bars = arrays["lengths"].sum() / 16
    out[split] = {
        "files": len(rows),
        "beats": sum(r["beat_type"] == "beat" for r in rows),
        "fills": sum(r["beat_type"] == "fill" for r in rows),
        "minutes": round(sum(float(r["duration"]) for r in rows) / 60, 1),
        "examples": int(len(arrays["lengths"])),
        "hits_per_bar": round(float(hits.sum() / max(bars, 1)), 2),
        "hits_per_bar_by_instrument": dict(zip(
            DRUM_NAMES, np.round(hits.sum((0, 1)) / max(bars, 1), 3).tolist())),
    }
  return out


def plot_dataset(groove_dir: pathlib.Path, splits: dict[str, dict[str, np.ndarray]],
                 figures: pathlib.Path) -> list[pathlib.Path]:
  index = groove_pipeline.read_split_index(groove_dir)
  names = list(splits)
  paths = []

  fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
  x = np.arange(len(names))
  axes[0].bar(x - 0.2, [len(index.get(s, [])) for s in names], 0.4, label="MIDI files")
  axes[0].bar(x + 0.2, [sum(r["beat_type"] == "beat" for r in index.get(s, []))
                        for s in names], 0.4, label="of which beats")
  axes[0].set_xticks(x, names)
  axes[0].set_title("files per split (info.csv)")
  axes[0].legend(fontsize=8)
  counts = [len(splits[s]["lengths"]) for s in names]
  axes[1].bar(x, counts, color="tab:green")
  for xi, c in zip(x, counts):
    axes[1].text(xi, c, str(c), ha="center", va="bottom", fontsize=8)
  axes[1].set_xticks(x, names)
  axes[1].set_title("4-bar examples per split (pipeline)")
  paths.append(_save(fig, figures / "data_splits.png"))

  styles = collections.Counter(primary_style(splits[names[0]]["style"]))
  top = [s for s, _ in styles.most_common()]
  fig, ax = plt.subplots(figsize=(9, 3.6))
  width = 0.8 / len(names)
  for i, s in enumerate(names):
    c = collections.Counter(primary_style(splits[s]["style"]))
    total = max(sum(c.values()), 1)
    ax.bar(np.arange(len(top)) + i * width, [c[t] / total for t in top], width, label=s)
  ax.set_xticks(np.arange(len(top)) + 0.4 - width / 2, top, rotation=45, ha="right")
  ax.set_ylabel("fraction of examples")
  ax.set_title("primary style of the 4-bar examples, per split")
  ax.legend(fontsize=8)
  paths.append(_save(fig, figures / "data_styles.png"))

  fig, ax = plt.subplots(figsize=(6, 3.2))
  bins = np.arange(40, 300, 10)
  for s in names:
    ax.hist([int(r["bpm"]) for r in index.get(s, [])], bins, histtype="step", density=True,
            label=s, linewidth=1.5)
  ax.set_xlabel("tempo (bpm, info.csv)")
  ax.set_ylabel("density of files")
  ax.set_title("tempo distribution")
  ax.legend(fontsize=8)
  paths.append(_save(fig, figures / "data_tempi.png"))

  train = splits[names[0]]
  hits = train["outputs"][..., :9] > 0.5
  vel = train["outputs"][..., 9:18]
  off = train["outputs"][..., 18:]
  bars = train["lengths"].sum() / 16
  fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
  axes[0].barh(DRUM_NAMES, hits.sum((0, 1)) / bars)
  axes[0].invert_yaxis()
  axes[0].set_title("hits per bar")
  axes[1].boxplot([vel[..., i][hits[..., i]] * 127 for i in range(9)], orientation="horizontal",
                  tick_labels=DRUM_NAMES, showfliers=False)
  axes[1].invert_yaxis()
  axes[1].set_title("velocity of hits (MIDI)")
  axes[2].hist(off[hits].ravel() / 2, bins=np.linspace(-0.5, 0.5, 41), color="tab:purple")
  axes[2].set_title("offset of hits (16th steps)")
  axes[2].set_xlabel("grid - played onset, positive = early")
  fig.suptitle(f"{names[0]} split: {hits.shape[0]} examples, {int(bars)} bars", fontsize=9)
  paths.append(_save(fig, figures / "data_instruments.png"))
  return paths


# ------------------------------------------------------------------------------ drawing


def draw_groove(ax, tensor: np.ndarray, title: str = "") -> None:
  """A ``[T, 27]`` groove tensor: one dot per hit at its played time, size ~ velocity."""
  steps = tensor.shape[0]
  hits, vel, off = tensor[:, :9] > 0.5, tensor[:, 9:18], tensor[:, 18:]
  t, d = np.nonzero(hits)
  ax.scatter(t - off[t, d] / 2, d, s=4 + 40 * vel[t, d], c=vel[t, d], cmap="viridis",
             vmin=0, vmax=1, edgecolors="none")
  for bar in range(0, steps + 1, 16):
    ax.axvline(bar - 0.5, color="tab:red", linewidth=0.6)
  ax.set_xlim(-0.5, steps - 0.5)
  ax.set_ylim(-0.7, 8.7)
  ax.set_yticks(range(9), DRUM_NAMES, fontsize=6)
  ax.invert_yaxis()
  ax.tick_params(axis="x", labelsize=6)
  if title:
    ax.set_title(title, fontsize=8, loc="left")


def grid_figure(tensors: Sequence[np.ndarray], titles: Sequence[str], path: pathlib.Path,
                suptitle: str = "") -> pathlib.Path:
  fig, axes = plt.subplots(len(tensors), 1, figsize=(10, 1.35 * len(tensors) + 0.5),
                           squeeze=False)
  for ax, t, title in zip(axes[:, 0], tensors, titles):
    draw_groove(ax, t, title)
  axes[-1, 0].set_xlabel("16th-note step (dot: played onset, size/colour: velocity)",
                         fontsize=7)
  if suptitle:
    fig.suptitle(suptitle, fontsize=9)
  return _save(fig, path)


def _save(fig, path: pathlib.Path) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


# ------------------------------------------------------------------------------ training


def plot_training(runs: Sequence[Run], path: pathlib.Path, title: str,
                  accuracy: str = "eval hit accuracy") -> pathlib.Path:
  """Reconstruction loss, KL (bits) and accuracy (teacher-forced vs free-running)."""
  fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
  for i, run in enumerate(runs):
    color = f"C{i}"
    axes[0].plot(*run.series("train", "r_loss"), color=color, alpha=0.5, label=run.name)
    axes[0].plot(*run.series("eval", "teacher_forced/r_loss"), "o-", color=color,
                 markersize=3)
    axes[1].plot(*run.series("train", "kl_bits"), color=color, label=run.name)
    fb = run.config.model.free_bits
    if fb:
      axes[1].axhline(fb, color=color, linestyle=":", linewidth=1)
    axes[2].plot(*run.series("eval", "teacher_forced/accuracy"), "o-", color=color,
                 markersize=3, label=f"{run.name} teacher-forced")
    axes[2].plot(*run.series("eval", "free_running/accuracy"), "x--", color=color,
                 markersize=4, label=f"{run.name} free-running")
  axes[0].set_title("reconstruction loss (line: train, dots: eval)")
  axes[0].set_yscale("log")
  axes[1].set_title("KL(q(z|x) || p(z)) in bits (dotted: free bits)")
  axes[2].set_title(accuracy)
  for ax in axes:
    ax.set_xlabel("step")
  axes[1].legend(fontsize=7)
  axes[2].legend(fontsize=6)
  fig.suptitle(title, fontsize=9)
  return _save(fig, path)


def encode_split(model: inference.MusicVAEModel, arrays: dict[str, np.ndarray],
                 limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Posterior means and scales ``[N, z]`` of (the first ``limit``) examples."""
  n = len(arrays["lengths"]) if limit is None else min(limit, len(arrays["lengths"]))
  _, mu, sigma = model.encode_tensors(arrays["inputs"][:n], arrays["lengths"][:n],
                                      arrays["controls"][:n])
  return mu, sigma


def kl_bits_per_dim(mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
  """Mean KL(q(z_j|x) || N(0, 1)) of each latent dimension, in bits."""
  kl = 0.5 * (mu ** 2 + sigma ** 2 - 1.0) - np.log(sigma)
  return kl.mean(0) / np.log(2.0)


def active_units(mu: np.ndarray, threshold: float = 0.01) -> int:
  """Latent dimensions whose posterior mean varies across the data (Burda et al.)."""
  return int(np.sum(mu.var(0) > threshold))


def load_model(run: Run) -> inference.MusicVAEModel:
  return inference.MusicVAEModel.from_workdir(run.workdir, max_batch_size=64)


def sweep_table(runs: Sequence[Run], eval_arrays: dict[str, np.ndarray], limit: int
                ) -> list[dict]:
  """Final eval metrics and active latent units of each run that has been evaluated."""
  rows = []
  for run in (r for r in runs if r.last("eval")):
    last = run.last("eval")
    m = run.config.model
    row = {"run": run.name, "steps": last.get("step"), "max_beta": m.max_beta,
           "free_bits": m.free_bits, "z_size": m.z_size,
           "enc_rnn_size": list(m.enc_rnn_size), "dec_rnn_size": list(m.dec_rnn_size),
           "batch_size": run.config.train.batch_size}
    for key in ("r_loss", "kl_bits", "loss"):
      row[key] = round(last.get(f"teacher_forced/{key}", float("nan")), 3)
    row["accuracy_teacher_forced"] = round(last.get("teacher_forced/accuracy", np.nan), 4)
    row["accuracy_free_running"] = round(last.get("free_running/accuracy", np.nan), 4)
    if run.has_checkpoint():
      mu, sigma = encode_split(load_model(run), eval_arrays, limit)
      row["active_units"] = active_units(mu)
      row["dims_over_half_bit"] = int(np.sum(kl_bits_per_dim(mu, sigma) > 0.5))
      row["mean_sigma"] = round(float(sigma.mean()), 3)
    rows.append(row)
  return rows


def markdown_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
  fmt = lambda v: "–" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))  # noqa: E731
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
  return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ generation


def pairwise_hamming(hits: np.ndarray) -> float:
  """Mean number of differing cells over all pairs of ``[n, ...]`` binary grids."""
  flat = hits.reshape(len(hits), -1).astype(np.float32)
  n = len(flat)
  if n < 2:
    return 0.0
  ones = flat.sum(1)
  differing = ones[:, None] + ones[None, :] - 2 * flat @ flat.T
  return float(differing.sum() / (n * (n - 1)))


def plot_temperature(model: inference.MusicVAEModel, data_hits_per_bar: float,
                     data_diversity: float, figures: pathlib.Path, samples: pathlib.Path,
                     n: int) -> dict:
  """One z decoded at each temperature, plus hit statistics over ``n`` prior samples."""
  z = model.sample_z(n, seed=1)
  stats = {}
  shown = []
  for t in TEMPERATURES:
    out = model.decode_to_tensors(z, temperature=t, seed=2)
    hits = out[..., :9] > 0.5
    bars = out.shape[1] / 16
    stats[t] = {"hits_per_bar": float(hits.sum((1, 2)).mean() / bars),
                "pairwise_hamming_per_bar": pairwise_hamming(hits) / bars,
                "mean_velocity": float(out[..., 9:18][hits].mean() * 127) if hits.any()
                                 else 0.0}
    shown.append(out[0])
    render.write_midi(model.to_sequences(out[:1])[0], samples / f"sample_T{t}.mid")
  grid_figure(shown, [f"T = {t}" for t in TEMPERATURES], figures / "gen_temperature.png",
              "one prior sample z ~ N(0, I) decoded at increasing softmax/sigmoid temperature")
  fig, ax = plt.subplots(1, 2, figsize=(9, 3))
  temps = list(stats)
  ax[0].plot(temps, [stats[t]["hits_per_bar"] for t in temps], "o-", label="samples")
  ax[0].axhline(data_hits_per_bar, color="k", linestyle=":", label="validation data")
  ax[0].set_xlabel("temperature")
  ax[0].set_title(f"hits per bar ({n} prior samples)")
  ax[0].legend(fontsize=8)
  ax[1].plot(temps, [stats[t]["pairwise_hamming_per_bar"] for t in temps], "o-")
  ax[1].axhline(data_diversity, color="k", linestyle=":", label="validation data")
  ax[1].set_xlabel("temperature")
  ax[1].set_title("diversity: hit cells differing per bar, per pair")
  ax[1].legend(fontsize=8)
  _save(fig, figures / "gen_temperature_stats.png")
  return stats


def plot_interpolation(model: inference.MusicVAEModel, arrays: dict[str, np.ndarray],
                       figures: pathlib.Path, samples: pathlib.Path) -> list[str]:
  """slerp between the posterior means of two validation beats of different styles."""
  styles = primary_style(arrays["style"])
  beats = np.nonzero(arrays["beat_type"] == "beat")[0]
  a = beats[0] if len(beats) else 0
  others = [i for i in beats if styles[i] != styles[a]]
  b = others[0] if others else len(styles) - 1
  _, mu, _ = model.encode_tensors(arrays["inputs"][[a, b]], arrays["lengths"][[a, b]],
                                  arrays["controls"][[a, b]])
  z = model.interpolate_z(mu[0], mu[1], 6)
  out = model.decode_to_tensors(z, temperature=0.5, seed=3)
  for i, ns in enumerate(model.to_sequences(out)):
    render.write_midi(ns, samples / f"interpolation_{i}.mid")
  names = [str(arrays["midi_filename"][i]) for i in (a, b)]
  titles = ([f"A: {names[0]}"] + [f"slerp alpha={t:.1f}" for t in np.linspace(0, 1, 6)]
            + [f"B: {names[1]}"])
  grid_figure([arrays["outputs"][a], *out, arrays["outputs"][b]], titles,
              figures / "gen_interpolation.png",
              "latent interpolation between two validation beats (T = 0.5, same seed)")
  return names


def plot_latent_pca(mu: np.ndarray, styles: np.ndarray, path: pathlib.Path,
                    top: int = 8) -> np.ndarray:
  """First two principal components of the posterior means, coloured by style."""
  centred = mu - mu.mean(0)
  _, s, vt = np.linalg.svd(centred, full_matrices=False)
  proj = centred @ vt[:2].T
  explained = s ** 2 / np.sum(s ** 2)
  fig, ax = plt.subplots(figsize=(6.5, 5))
  common = [k for k, _ in collections.Counter(styles).most_common(top)]
  for i, style in enumerate(common):
    sel = styles == style
    ax.scatter(proj[sel, 0], proj[sel, 1], s=5, color=f"C{i}", label=f"{style} ({sel.sum()})")
  rest = ~np.isin(styles, common)
  ax.scatter(proj[rest, 0], proj[rest, 1], s=5, color="lightgrey", label="other")
  ax.set_xlabel(f"PC1 ({explained[0]:.0%} of variance)")
  ax.set_ylabel(f"PC2 ({explained[1]:.0%})")
  ax.set_title("posterior means of the validation windows (PCA)", fontsize=9)
  ax.legend(fontsize=7, markerscale=2)
  _save(fig, path)
  return explained


def plot_task(run: Run, figures: pathlib.Path, samples: pathlib.Path, groove_dir,
              count: int = 2) -> dict:
  """Input / model output / target for a GrooVAE task model on validation windows."""
  model = load_model(run)
  arrays = groove_split(run.config, "validation", groove_dir)
  beats = np.nonzero(arrays["beat_type"] == "beat")[0][::97][:count]
  if not len(beats):
    raise ValueError(f"{run.name}: no beat windows in the validation split")
  _, mu, _ = model.encode_tensors(arrays["inputs"][beats], arrays["lengths"][beats],
                                  arrays["controls"][beats])
  out = model.decode_to_tensors(mu, temperature=None)
  tensors, titles = [], []
  for k, i in enumerate(beats):
    name = arrays["midi_filename"][i]
    tensors += [arrays["inputs"][i], out[k], arrays["outputs"][i]]
    titles += [f"input ({name})", "model output", "original performance"]
    render.write_midi(model.to_sequences(out[k:k + 1])[0], samples / f"{run.name}_{k}.mid")
  grid_figure(tensors, titles, figures / f"task_{run.name}.png", run.config.name)
  return _task_errors(model, arrays)


def _task_errors(model: inference.MusicVAEModel, arrays: dict[str, np.ndarray],
                 limit: int = 256) -> dict:
  """Velocity / offset error of greedy reconstructions at the true hits (first ``limit``)."""
  _, mu, _ = model.encode_tensors(arrays["inputs"][:limit], arrays["lengths"][:limit],
                                  arrays["controls"][:limit])
  out = model.decode_to_tensors(mu, temperature=None)
  target = arrays["outputs"][:limit]
  hits = target[..., :9] > 0.5
  pred_hits = out[..., :9] > 0.5
  return {"examples": int(len(target)),
          "hit_accuracy": round(float((pred_hits == hits).mean()), 4),
          "hit_accuracy_silent_baseline": round(float(1 - hits.mean()), 4),
          "velocity_mae_midi": round(float(np.abs(out[..., 9:18] - target[..., 9:18])[hits]
                                           .mean() * 127), 2),
          "velocity_mae_midi_mean_baseline": round(float(np.abs(
              target[..., 9:18][hits] - target[..., 9:18][hits].mean()).mean() * 127), 2),
          "offset_mae_steps": round(float(np.abs(out[..., 18:] - target[..., 18:])[hits]
                                          .mean() / 2), 4),
          "offset_mae_steps_zero_baseline": round(float(np.abs(target[..., 18:][hits])
                                                        .mean() / 2), 4)}


# ------------------------------------------------------------------------------ main


#: Magenta config name -> (Table 1 row, "flat" | "hier") for categorical runs.
TABLE1_RUNS = {
    "cat-drums_2bar_small": ("2-bar drums", "flat"),
    "cat-mel_2bar_small": ("2-bar melody", "flat"),
    "flat-mel_16bar": ("16-bar melody", "flat"),
    "hierdec-mel_16bar": ("16-bar melody", "hier"),
}
REPRODUCTION_COLUMNS = (
    "model", "paper TF flat", "paper TF hier", "paper sampling flat", "paper sampling hier",
    "ours TF flat", "ours TF hier", "ours sampling flat", "ours sampling hier",
    "majority class", "ours")


def evaluated_examples(run: Run) -> dict[str, np.ndarray]:
  """The validation examples ``run``'s evaluations used (its ``eval_num_batches``)."""
  arrays = input_pipeline.load_split(run.config, "validation")
  batches = list(input_pipeline.eval_batches(arrays, run.config.train.batch_size,
                                             run.config.train.eval_num_batches))
  return {k: np.concatenate([b[k] for b in batches]) for k in ("outputs", "lengths")}


def majority_class_accuracy(arrays: dict[str, np.ndarray]) -> float:
  """Accuracy of always predicting the most frequent target class (valid steps only)."""
  steps = np.arange(arrays["outputs"].shape[1])[None, :] < arrays["lengths"][:, None]
  classes = np.argmax(arrays["outputs"], axis=-1)[steps]
  return float(np.bincount(classes).max() / classes.size)


def _run_note(run: Run, last: dict) -> str:
  """Data, model size, batch and steps of a categorical run, for the table."""
  c = run.config
  data = ("Groove (NoteSequences, id-hash split)" if c.data.dataset == "note_sequences"
          else c.data.dataset)
  return (f"{data}; enc {list(c.model.enc_rnn_size)}, dec {list(c.model.dec_rnn_size)}, "
          f"z {c.model.z_size}; batch {c.train.batch_size}, {last['step']} steps")


def reproduction_rows(groove_runs: Sequence[Run], table1_runs: Sequence[Run] = (),
                      baselines: dict[str, float] | None = None) -> list[dict]:
  """Table 1 next to our runs: categorical runs fill their row's flat / hier columns.

  ``baselines``: run name -> majority-class accuracy on the validation examples that
  run evaluated on.
  """
  rows = {k: {"model": k, "paper TF flat": v[0], "paper TF hier": v[1],
              "paper sampling flat": v[2], "paper sampling hier": v[3], "ours": []}
          for k, v in PAPER_TABLE1.items()}
  for run in table1_runs:
    last = run.last("eval")
    if run.config.name not in TABLE1_RUNS or not last:
      continue
    model, kind = TABLE1_RUNS[run.config.name]
    rows[model][f"ours TF {kind}"] = round(last["teacher_forced/accuracy"], 4)
    rows[model][f"ours sampling {kind}"] = round(last["free_running/accuracy"], 4)
    rows[model]["ours"].append(f"{kind}: {_run_note(run, last)}")
    if baselines and run.name in baselines:
      rows[model]["majority class"] = round(baselines[run.name], 4)
  out = [{**r, "ours": " / ".join(r["ours"]) or "not run"} for r in rows.values()]
  for run in groove_runs:
    last = run.last("eval")
    if last:
      out.append({"model": f"GrooVAE 4-bar ({run.name}, {last['step']} steps)",
                  "ours TF flat": round(last["teacher_forced/accuracy"], 4),
                  "ours sampling flat": round(last["free_running/accuracy"], 4),
                  "ours": "hit accuracy, Groove validation"})
  return out


def make_all(runs_dir: pathlib.Path, out: pathlib.Path, extra_runs: Sequence[str] = (),
             generation_run: str | None = None, groove_dir: str | None = None,
             encode_limit: int | None = None, num_samples: int = 64) -> dict[str, Any]:
  """Writes ``out/figures``, ``out/tables`` and ``out/samples``; returns the summary."""
  figures, tables, samples = out / "figures", out / "tables", out / "samples"
  for d in (figures, tables, samples):
    d.mkdir(parents=True, exist_ok=True)
  runs = find_runs(runs_dir, extra_runs)
  g4 = runs_named(runs, "groovae_4bar")
  if not g4:
    raise ValueError(f"no groovae_4bar runs (config.json + metrics.jsonl) under {runs_dir}")
  sweep = [r for r in g4 if r.workdir.parent == runs_dir]
  gen = next((r for r in g4 if r.name == generation_run), None) if generation_run else (
      [r for r in sweep if r.has_checkpoint()] or [None])[-1]
  if gen is None:
    raise ValueError(f"generation run {generation_run!r} not found or without checkpoint")
  root = input_pipeline.resolve_path(groove_dir or gen.config.data.path)
  splits = {s: groove_split(gen.config, s, groove_dir) for s in ("train", "validation", "test")}
  summary: dict[str, Any] = {"runs": [r.name for r in runs], "generation_run": gen.name}

  summary["dataset"] = dataset_stats(root, splits)
  (tables / "dataset.json").write_text(json.dumps(summary["dataset"], indent=1) + "\n")
  (tables / "dataset.md").write_text(markdown_table(
      [{"split": s, **{k: v for k, v in d.items() if not isinstance(v, dict)}}
       for s, d in summary["dataset"].items()],
      ["split", "files", "beats", "fills", "minutes", "examples", "hits_per_bar"]))
  plot_dataset(root, splits, figures)
  val = splits["validation"]
  grid_figure([val["outputs"][0]], [f"validation example 0: {val['midi_filename'][0]}"],
              figures / "data_example.png")

  plot_training(sweep, figures / "train_sweep.png",
                "small groove_4bar models: KL weight beta / free bits sweep")
  for run in g4:
    if run not in sweep:
      plot_training([run], figures / f"train_{run.name}.png",
                    f"{run.name}: full-size groove_4bar (Magenta hyper-parameters)")
  rows = sweep_table(sweep, val, encode_limit)
  summary["sweep"] = rows
  (tables / "sweep.json").write_text(json.dumps(rows, indent=1) + "\n")
  (tables / "sweep.md").write_text(markdown_table(rows, [
      "run", "steps", "max_beta", "free_bits", "r_loss", "kl_bits", "accuracy_teacher_forced",
      "accuracy_free_running", "active_units", "dims_over_half_bit", "mean_sigma"]))

  model = load_model(gen)
  data_hpb = summary["dataset"]["validation"]["hits_per_bar"]
  spread = np.linspace(0, len(val["lengths"]) - 1, num_samples).astype(int)
  data_div = pairwise_hamming(val["outputs"][spread, :, :9] > 0.5) / (
      val["outputs"].shape[1] / 16)
  summary["temperature"] = plot_temperature(model, data_hpb, data_div, figures, samples,
                                            num_samples)
  summary["interpolation"] = plot_interpolation(model, val, figures, samples)
  mu, _ = encode_split(model, val, encode_limit)
  explained = plot_latent_pca(mu, primary_style(val["style"][:len(mu)]),
                              figures / "gen_latent_pca.png")
  summary["pca_explained"] = np.round(explained[:5], 4).tolist()

  summary["tasks"] = {}
  for run in runs:
    if run.config.name.startswith("groovae_2bar") and run.has_checkpoint():
      summary["tasks"][run.name] = plot_task(run, figures, samples, groove_dir)
  (tables / "tasks.json").write_text(json.dumps(summary["tasks"], indent=1) + "\n")

  table1 = [r for r in runs if r.config.name in TABLE1_RUNS]
  for model in sorted({TABLE1_RUNS[r.config.name][0] for r in table1}):
    same = [r for r in table1 if TABLE1_RUNS[r.config.name][0] == model]
    plot_training(same, figures / f"train_{model.replace(' ', '_')}.png",
                  f"{model}: {', '.join(r.name for r in same)}", accuracy="eval accuracy")
  baselines = {r.name: majority_class_accuracy(evaluated_examples(r)) for r in table1}
  repro = reproduction_rows(g4, table1, baselines)
  summary["reproduction"] = repro
  (tables / "reproduction.md").write_text(markdown_table(repro, REPRODUCTION_COLUMNS))
  (tables / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
  return summary


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--runs_dir", required=True, type=pathlib.Path)
  parser.add_argument("--out", default=pathlib.Path(__file__).parent, type=pathlib.Path)
  parser.add_argument("--extra_runs", nargs="*", default=[],
                      help="more workdirs (e.g. the full-size acceptance run)")
  parser.add_argument("--generation_run", default=None,
                      help="name of the groovae_4bar run used for generation figures")
  parser.add_argument("--groove_dir", default=None, help="default: the runs' data.path")
  parser.add_argument("--encode_limit", type=int, default=None,
                      help="encode at most this many validation windows")
  parser.add_argument("--num_samples", type=int, default=64)
  args = parser.parse_args(argv)
  summary = make_all(args.runs_dir, args.out, args.extra_runs, args.generation_run,
                     args.groove_dir, args.encode_limit, args.num_samples)
  print(json.dumps({k: summary[k] for k in ("runs", "generation_run", "pca_explained")}))


if __name__ == "__main__":
  main()
