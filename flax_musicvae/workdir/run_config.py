"""A run's ``config.json``: read, written, and checked against a given config."""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections

from flax_musicvae import config_lib
from flax_musicvae.workdir.layout import CONFIG_FILE
from flax_musicvae.workdir.layout import PathLike
from flax_musicvae.workdir.layout import WorkdirError
from flax_musicvae.workdir.layout import is_local
from flax_musicvae.workdir.layout import path
from flax_musicvae.workdir.layout import replace_file

#: Config sections a resumed run may change; everything else must match config.json.
MUTABLE_SECTIONS = ("train",)
#: Keys outside MUTABLE_SECTIONS that may change too (where things live, not what they are).
MUTABLE_KEYS = ("name", "data.cache_dir")


def plain(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config as the JSON values it is stored as (tuples become lists)."""
  return json.loads(config.to_json_best_effort())


def absolute_data_paths(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy with ``data.path``/``data.cache_dir`` absolute (relative: to the current directory)."""
  config = ml_collections.ConfigDict(config.to_dict())
  for key in ("path", "cache_dir"):
    value = config.data.get(key, "")
    if value and is_local(value):
      config.data[key] = os.path.abspath(os.path.expanduser(value))
  return config


def _merged(defaults: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
  return {**defaults, **{k: _merged(defaults[k], v) if isinstance(v, dict) and
                         isinstance(defaults.get(k), dict) else v for k, v in values.items()}}


def load_config(workdir: PathLike) -> ml_collections.ConfigDict:
  """``config.json`` of a run (keys added since it was written get their defaults).

  ``FileNotFoundError`` when ``workdir`` is not a run directory.
  """
  file = path(workdir) / CONFIG_FILE
  if not file.exists():
    raise FileNotFoundError(f"{file} not found: --workdir must be a training run directory "
                            "(python -m flax_musicvae.main --workdir=...)")
  stored = json.loads(file.read_text())
  return ml_collections.ConfigDict(_merged(plain(config_lib.base_config()), stored))


def write_config(workdir: PathLike, config: ml_collections.ConfigDict) -> None:
  """Writes ``config.json`` atomically (a temporary file, then a rename)."""
  workdir = path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  replace_file(workdir / CONFIG_FILE, (config.to_json_best_effort(indent=2) + "\n").encode())


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict):
    return {k: v for key, sub in tree.items() for k, v in _flat(sub, f"{prefix}{key}.").items()}
  return {prefix[:-1]: tree}


def config_differences(stored: ml_collections.ConfigDict, given: ml_collections.ConfigDict
                       ) -> list[str]:
  """``key: stored -> given`` for every model/data key that differs (train etc. may)."""
  a, b = _flat(plain(stored)), _flat(plain(given))
  mutable = lambda k: k.split(".")[0] in MUTABLE_SECTIONS or k in MUTABLE_KEYS
  return [f"{k}: {a.get(k, '<unset>')} -> {b.get(k, '<unset>')}"
          for k in sorted(set(a) | set(b)) if not mutable(k) and a.get(k) != b.get(k)]


def resolve_config(workdir: PathLike, given: ml_collections.ConfigDict | None
                   ) -> ml_collections.ConfigDict:
  """The config to run ``workdir`` with: ``given`` checked against config.json, or that.

  A new run needs ``given``. For an existing run, ``given`` may change the train
  settings (steps, logging, evaluation, checkpointing, learning rate, ...) but not the
  model or the data: those are refused with the list of differing keys.
  """
  stored = load_config(workdir) if (path(workdir) / CONFIG_FILE).exists() else None
  if given is None:
    if stored is None:
      raise WorkdirError(f"{workdir} has no {CONFIG_FILE}: pass --config to start a run")
    return stored
  given = absolute_data_paths(given)
  if stored is not None:
    diff = config_differences(stored, given)
    if diff:
      raise WorkdirError(
          f"--config differs from the run's {path(workdir) / CONFIG_FILE} in model/data "
          f"settings ({'; '.join(diff)}): leave out --config to continue this run, or "
          "use another --workdir")
  return given
