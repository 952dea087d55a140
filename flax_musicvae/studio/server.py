"""The studio's web server (Flask): the page, its static files and a JSON API.

Requests and answers:

  GET  /api/info                     the model, its bars, attribute vectors, task models
  POST /api/generate                 JSON {n, temperature, seed, attributes: {name: s}}
  POST /api/interpolate              form: midi_a, midi_b (files), start_a, start_b, steps,
                                     method, temperature, seed
  POST /api/similar                  form: midi, start_bar, n, similarity, temperature, seed,
                                     attributes (JSON)
  POST /api/groove/<task>            form: midi, or (drumify) wav / taps (JSON {times,
                                     strengths}) with qpm; groove (transfer), keep_original
                                     (infill), temperature, seed

Answers are JSON: ``{"clips": [...]}`` (see :func:`engine.clip`) or ``{"error": "..."}``
with a 4xx status for the user's mistakes and 500 for anything else, never a traceback.
Uploads over ``max_upload_bytes`` are refused before they are read.
"""

from __future__ import annotations

import json
import logging
import pathlib
from typing import Any

import flask
from werkzeug import exceptions

from flax_musicvae import audio_taps
from flax_musicvae import inference
from flax_musicvae.studio import engine

STATIC = pathlib.Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 1 << 20
USER_ERRORS = (engine.StudioError, inference.InputError, audio_taps.AudioError)


def _form_number(name: str, default, kind=float):
  raw = flask.request.values.get(name)
  if raw is None or raw == "":
    return default
  try:
    return kind(raw)
  except ValueError:
    raise engine.StudioError(f"{name} must be a number, got {raw[:40]!r}") from None


def _json_body() -> dict[str, Any]:
  body = flask.request.get_json(silent=True)
  if not isinstance(body, dict):
    raise engine.StudioError("the request body must be a JSON object")
  return body


def _json_number(body: dict[str, Any], name: str, default, kind=float):
  value = body.get(name, default)
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise engine.StudioError(f"{name} must be a number, got {str(value)[:40]!r}")
  if kind is int and value != int(value):
    raise engine.StudioError(f"{name} must be a whole number, got {value}")
  return kind(value)


def _strengths(value) -> dict[str, float]:
  if isinstance(value, str):
    try:
      value = json.loads(value or "{}")
    except json.JSONDecodeError:
      raise engine.StudioError("attributes must be a JSON object {name: strength}") from None
  if not isinstance(value, dict) or not all(
      isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()):
    raise engine.StudioError("attributes must be a JSON object {name: strength}")
  return {str(k): float(v) for k, v in value.items()}


def _upload(studio: engine.Studio, field: str, what: str, required: bool = True):
  file = flask.request.files.get(field)
  if file is None or not file.filename:
    if required:
      raise engine.StudioError(f"choose {what} (a .mid file)")
    return None
  return studio.sequence(file.read(), pathlib.Path(file.filename).name)


def create_app(studio: engine.Studio, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> flask.Flask:
  """The studio's Flask app around ``studio``."""
  app = flask.Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
  app.config["MAX_CONTENT_LENGTH"] = max_upload_bytes
  app.config["MAX_FORM_MEMORY_SIZE"] = max_upload_bytes
  app.json.sort_keys = False

  def clips(items):
    return flask.jsonify({"clips": items if isinstance(items, list) else [items]})

  @app.get("/")
  def index():
    return flask.send_from_directory(STATIC, "index.html")

  @app.get("/api/info")
  def info():
    return flask.jsonify(studio.info())

  @app.post("/api/generate")
  def generate():
    body = _json_body()
    return clips(studio.generate(_json_number(body, "n", 4, int),
                                 _json_number(body, "temperature", 0.5),
                                 _json_number(body, "seed", 0, int),
                                 _strengths(body.get("attributes", {}))))

  @app.post("/api/interpolate")
  def interpolate():
    a = _upload(studio, "midi_a", "clip A")
    b = _upload(studio, "midi_b", "clip B")
    method = flask.request.values.get("method", "slerp")
    return clips(studio.interpolate(
        a, b, _form_number("start_a", 1, int), _form_number("start_b", 1, int),
        _form_number("steps", 5, int), method, _form_number("temperature", 0.5),
        _form_number("seed", 0, int)))

  @app.post("/api/similar")
  def similar():
    ns = _upload(studio, "midi", "a clip")
    return clips(studio.similar(
        ns, _form_number("start_bar", 1, int), _form_number("n", 4, int),
        _form_number("similarity", 0.8), _form_number("temperature", 0.5),
        _form_number("seed", 0, int), _strengths(flask.request.values.get("attributes", "{}"))))

  @app.post("/api/groove/<task>")
  def groove(task: str):
    if task not in engine.TASKS:
      raise engine.StudioError(f"unknown task {task!r}; one of {', '.join(engine.TASKS)}")
    studio.task_model(task)  # no model for the task: say so before reading the inputs
    qpm = _form_number("qpm", 120.0)
    source = None
    if task == "drumify" and flask.request.values.get("taps"):
      try:
        taps = json.loads(flask.request.values["taps"])
        times, strengths = list(taps["times"]), list(taps["strengths"])
      except (json.JSONDecodeError, KeyError, TypeError):
        raise engine.StudioError("taps must be JSON {times: [...], strengths: [...]}") from None
      source = studio.taps(times, strengths, qpm)
    elif task == "drumify" and flask.request.files.get("wav"):
      wav = flask.request.files["wav"]
      source = studio.wav_taps(wav.read(), pathlib.Path(wav.filename or "the WAV").name, qpm)
    if source is None:
      source = _upload(studio, "midi", "the input clip" if task != "transfer"
                       else "the clip whose hits to keep")
    feel = _upload(studio, "groove", "the groove clip", required=task == "transfer")
    out = studio.groove(task, source, _form_number("temperature", 0.5),
                        _form_number("seed", 0, int),
                        flask.request.values.get("keep_original") in ("1", "true", "on"), feel)
    inputs = [engine.clip(source, source.filename or "taps", engine.bar_count(source))]
    return flask.jsonify({"clips": [out], "inputs": inputs})

  @app.errorhandler(exceptions.RequestEntityTooLarge)
  def too_large(_):
    return flask.jsonify(error=f"the upload is larger than {max_upload_bytes // 1024} KB; "
                               "choose a smaller MIDI or WAV file"), 413

  @app.errorhandler(exceptions.HTTPException)
  def http_error(e: exceptions.HTTPException):
    return flask.jsonify(error=f"{e.code} {e.name}: {e.description}"), e.code

  @app.errorhandler(Exception)
  def any_error(e: Exception):
    if isinstance(e, USER_ERRORS):
      return flask.jsonify(error=str(e)), 400
    app.logger.exception("request failed: %s", e)  # the traceback stays in the log
    return flask.jsonify(error=f"the studio could not do that ({type(e).__name__}); see "
                               "the server's log"), 500

  logging.getLogger("werkzeug").setLevel(logging.WARNING)
  return app
