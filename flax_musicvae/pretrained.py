r"""Shipped models: float16 weights, the run's config and a model card, one folder each.

  python -m flax_musicvae.pretrained --workdir=/tmp/groove_4bar --name=groove_4bar
  python -m flax_musicvae.generate --model=groove_4bar --mode=sample

A model is ``<root>/<name>/`` holding ``weights.npz`` (float16, one array per flat
parameter path such as ``encoder/.../kernel``), ``config.json`` (the run's, as
:mod:`flax_musicvae.workdir` stores it), ``training.json`` (step, batch size, wall time, loss curves)
and ``MODEL_CARD.md``. ``<root>`` is the package's
``pretrained/`` folder, or ``$FLAX_MUSICVAE_PRETRAINED`` when set. Loading reads only these
files (no orbax, no TensorFlow).

The command packages the newest usable checkpoint of a finished run into
``--output_dir`` (default: ``<root>``). Weights that are not finite in float16 are refused.
User errors are one ``error: ...`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import re
import sys
from typing import Any, Sequence

import ml_collections
import numpy as np

from flax_musicvae import cli
from flax_musicvae import workdir as workdir_lib

ROOT_ENV = "FLAX_MUSICVAE_PRETRAINED"
WEIGHTS_FILE = "weights.npz"
CARD_FILE = "MODEL_CARD.md"
TRAINING_FILE = "training.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

GROOVE_ATTRIBUTION = (
    "The Groove MIDI Dataset is by Jon Gillick, Adam Roberts, Jesse Engel, Douglas Eck and "
    "David Bamman, \"Learning to Groove with Inverse Sequence Transformations\", ICML 2019, "
    "licensed CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/).")

CARD_TEMPLATE = """\
# {name}

`{config_name}` ({params:,} parameters, shipped as float16), packaged {date} from step
{step:,} of the run `{workdir}`.

    python -m flax_musicvae.generate --model={name} --mode=sample --num_outputs=3

## Data and split

- dataset `{dataset}` at `{data_path}` (converter `{converter}`)
- trained on split `train`, evaluated on split `validation`{split_note}; the test split
  was not used
- {attribution}

## Training

- steps: {step:,} at batch size {batch_size} (learning rate {learning_rate}, seed {seed})
- training wall time: {wall_time} (sum over logged intervals, excluding evaluation and
  checkpointing, from `metrics.jsonl`)

## Metrics

{metrics}

The full config is `config.json` beside this card.
"""


class UnknownModelError(FileNotFoundError):
  """No shipped model of that name; the message lists the available ones."""


class PackageError(ValueError):
  """A run that cannot be shipped as asked; the message says why."""


def root() -> pathlib.Path:
  """The folder the registry reads: ``$FLAX_MUSICVAE_PRETRAINED`` or the package's own."""
  env = os.environ.get(ROOT_ENV)
  return pathlib.Path(env).expanduser() if env else pathlib.Path(__file__).with_suffix("")


def available(folder: str | os.PathLike | None = None) -> list[str]:
  """Names of the models under ``folder`` (default :func:`root`), sorted."""
  folder = pathlib.Path(folder) if folder is not None else root()
  if not folder.is_dir():
    return []
  return sorted(p.name for p in folder.iterdir()
                if (p / WEIGHTS_FILE).is_file() and (p / workdir_lib.CONFIG_FILE).is_file())


def model_dir(name: str, folder: str | os.PathLike | None = None) -> pathlib.Path:
  """The folder of model ``name``; ``UnknownModelError`` naming the available ones."""
  folder = pathlib.Path(folder) if folder is not None else root()
  names = available(folder)
  if name in names:
    return folder / name
  if not names:
    raise UnknownModelError(
        f"unknown model {name!r}: no trained model ships yet ({folder} holds none); train "
        "one (python -m flax_musicvae.main) and pass --workdir")
  raise UnknownModelError(f"unknown model {name!r}: available models are {', '.join(names)}")


def load(name: str, folder: str | os.PathLike | None = None
         ) -> tuple[ml_collections.ConfigDict, Any]:
  """(config, float32 params) of shipped model ``name``."""
  directory = model_dir(name, folder)
  config = workdir_lib.load_config(directory)
  with np.load(directory / WEIGHTS_FILE) as npz:
    params = workdir_lib.unflatten_params({k: npz[k].astype(np.float32) for k in npz.files})
  return config, params


def float16_weights(params: Any) -> dict[str, np.ndarray]:
  """Flat float16 weights of ``params``; ``PackageError`` if any is not finite in float16."""
  with np.errstate(over="ignore"):
    flat = {k: np.asarray(v).astype(np.float16)
            for k, v in workdir_lib.flatten_params(params).items()}
  bad = [k for k, v in flat.items() if not np.isfinite(v).all()]
  if bad:
    raise PackageError(f"non-finite weights in float16 (NaN/inf, or |w| > 65504): "
                       f"{', '.join(bad[:5])}")
  return flat


def _wall_seconds(train_rows: list[dict[str, Any]]) -> float:
  seconds, previous = 0.0, 0
  for row in train_rows:
    if row.get("steps_per_second"):
      seconds += (row["step"] - previous) / row["steps_per_second"]
    previous = row["step"]
  return seconds


def _metrics_table(rows: list[dict[str, Any]]) -> str:
  last = {}
  for row in rows:
    last[row["split"]] = row
  if not last:
    return "No metrics were recorded for this run."
  lines = ["| split | step | metric | value |", "|---|---|---|---|"]
  for split, row in sorted(last.items()):
    lines += [f"| {split} | {row['step']:,} | {k} | {v:.6g} |" for k, v in row.items()
              if k not in ("split", "step") and isinstance(v, (int, float))]
  return "\n".join(lines)


def training_info(name: str, folder: str | os.PathLike | None = None) -> dict[str, Any]:
  """``training.json`` of shipped model ``name``: step, batch_size, wall_seconds, workdir,
  curves."""
  return json.loads((model_dir(name, folder) / TRAINING_FILE).read_text())


def set_card_section(name: str, title: str, markdown: str,
                     folder: str | os.PathLike | None = None) -> None:
  """Writes (or replaces) the ``## title`` section at the end of model ``name``'s card."""
  card = model_dir(name, folder) / CARD_FILE
  text = card.read_text()
  head, _, _ = text.partition(f"\n## {title}\n")
  card.write_text(head.rstrip("\n") + f"\n\n## {title}\n\n{markdown.strip()}\n")


def model_card(name: str, workdir: str | os.PathLike, config: ml_collections.ConfigDict,
               step: int, weights: dict[str, np.ndarray], rows: list[dict[str, Any]],
               wall_seconds: float) -> str:
  """``MODEL_CARD.md``: the run's data, split, steps, batch, wall time and the last metrics
  of ``rows`` (the run's metrics up to ``step``)."""
  data = config.data
  groove = "groove" in (data.dataset, data.converter)
  return CARD_TEMPLATE.format(
      name=name, config_name=config.get("name", ""), params=sum(w.size for w in weights.values()),
      date=datetime.date.today().isoformat(), step=step, workdir=workdir,
      dataset=data.dataset, data_path=data.path, converter=data.converter,
      split_note=("" if groove else f" (a hash split, eval_fraction {data.eval_fraction})"),
      attribution=GROOVE_ATTRIBUTION if groove else "data licence: see the dataset's own terms",
      batch_size=config.train.batch_size, learning_rate=config.train.learning_rate,
      seed=config.train.seed, wall_time=datetime.timedelta(seconds=round(wall_seconds)),
      metrics=_metrics_table(rows))


def package(workdir: str | os.PathLike, name: str, output_dir: str | os.PathLike | None = None,
            overwrite: bool = False) -> pathlib.Path:
  """Writes the newest usable checkpoint of run ``workdir`` as model ``name``; its folder."""
  if not _NAME.fullmatch(name):
    raise PackageError(f"--name={name!r}: use letters, digits, '_', '-' and '.'")
  out = pathlib.Path(output_dir or root()) / name
  if out.exists() and not overwrite:
    raise FileExistsError(f"{out} already exists: pass --overwrite to replace it")
  config, params, step = workdir_lib.load(workdir)
  try:
    weights = float16_weights(params)
  except PackageError as e:
    raise PackageError(f"{workdir} step {step}: {e}") from e
  out.mkdir(parents=True, exist_ok=True)
  np.savez(out / WEIGHTS_FILE, **weights)
  workdir_lib.write_config(out, config)
  rows = [r for r in workdir_lib.read_metrics(workdir) if r["step"] <= step]
  wall_seconds = _wall_seconds([r for r in rows if r["split"] == "train"])
  curve = lambda split, keys: [[r["step"]] + [round(r[k], 5) for k in keys if k in r]  # noqa: E731
                               for r in rows if r["split"] == split]
  (out / TRAINING_FILE).write_text(json.dumps(
      {"step": step, "batch_size": config.train.batch_size,
       "wall_seconds": round(wall_seconds), "workdir": str(workdir),
       "curves": {"train [step, loss, accuracy]": curve("train", ("loss", "accuracy")),
                  "eval [step, loss, teacher-forced accuracy, free-running accuracy]": curve(
                      "eval", ("loss", "teacher_forced/accuracy", "free_running/accuracy"))}},
      indent=None) + "\n")
  (out / CARD_FILE).write_text(model_card(name, workdir, config, step, weights, rows,
                                          wall_seconds))
  return out


def main(argv: Sequence[str] | None = None) -> int:
  """``python -m flax_musicvae.pretrained`` (``flax-musicvae-package``)."""
  parser = argparse.ArgumentParser(prog="python -m flax_musicvae.pretrained",
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True, help="finished training run to package")
  parser.add_argument("--name", required=True,
                      help="model name (its folder, and generate's --model)")
  parser.add_argument("--output_dir", help=f"registry folder to write into (default: "
                                           f"${ROOT_ENV} or the package's pretrained/)")
  parser.add_argument("--overwrite", action="store_true",
                      help="replace an existing model of that name")
  args = parser.parse_args(argv)
  with cli.parser_errors(parser, PackageError, workdir_lib.WorkdirError, FileNotFoundError,
                         FileExistsError):
    out = package(args.workdir, args.name, args.output_dir, args.overwrite)
  print(f"wrote {out} ({', '.join(sorted(p.name for p in out.iterdir()))})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
