r"""Starts the studio: a local web page for a trained MusicVAE / GrooVAE.

  python -m flax_musicvae.studio --model=groove_4bar
  python -m flax_musicvae.studio --workdir=/tmp/groove_4bar --port=8050
  python -m flax_musicvae.studio --config=configs/groove_4bar.py --checkpoint_file=groovae_4bar.tar

Then open the address it prints. It listens on 127.0.0.1 (this machine only) unless
--host says otherwise. The GrooVAE tasks use the shipped 2-bar task models unless
--humanize_model / --drumify_model / --infill_model / --transfer_model name another
(a shipped name or a workdir). User errors print "error: ..." and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import threading

from flax_musicvae import cli  # also silences note_seq's ffmpeg warning

DEFAULT_PORT = 8050


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m flax_musicvae.studio", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  source = p.add_mutually_exclusive_group()
  source.add_argument("--model", help="a shipped model by name (default: groove_4bar)")
  source.add_argument("--workdir", help="a training run directory (config.json + checkpoints/)")
  source.add_argument("--checkpoint_file", help="an original Magenta checkpoint (prefix, "
                                                "directory or .tar); needs --config")
  p.add_argument("--config", help="config file for --checkpoint_file")
  for task in ("humanize", "drumify", "infill", "transfer"):
    p.add_argument(f"--{task}_model", help=f"model for {task}: a shipped name or a workdir")
  p.add_argument("--attribute_file", action="append", default=[],
                 help="an attribute vector (.npz from --mode=attribute) for the latent "
                      "sliders; repeatable (attribute_*.npz beside the model are found too)")
  p.add_argument("--host", default="127.0.0.1",
                 help="address to listen on (default: %(default)s, this machine only)")
  p.add_argument("--port", type=int, default=DEFAULT_PORT, help="default: %(default)s")
  p.add_argument("--max_upload_kb", type=int, default=1024,
                 help="largest upload accepted (default: %(default)s KB)")
  p.add_argument("--no_warm", action="store_true",
                 help="skip compiling the models before serving (faster start, slower "
                      "first clicks); by default the sampler compiles before the server "
                      "starts and the GrooVAE task models in the background")
  return p


def make_studio(args):
  """The :class:`engine.Studio` the flags describe (a ``StudioError`` when they conflict)."""
  from flax_musicvae.studio import engine  # pylint: disable=g-import-not-at-top
  if args.config and not args.checkpoint_file:
    raise engine.StudioError("--config goes with --checkpoint_file")
  if args.workdir:
    main = engine.ModelSource(workdir=args.workdir)
  elif args.checkpoint_file:
    if not args.config:
      raise engine.StudioError("--checkpoint_file needs --config (the Magenta config it was "
                               "trained with)")
    main = engine.ModelSource(checkpoint_file=args.checkpoint_file, config=args.config)
  else:
    main = engine.ModelSource(pretrained=args.model or "groove_4bar")
  tasks = {t: engine.ModelSource.parse(getattr(args, f"{t}_model"))
           for t in engine.TASKS if getattr(args, f"{t}_model")}
  return engine.Studio(main, tasks, args.attribute_file)


def _warm_tasks(studio) -> None:
  try:
    studio.warm_tasks()
  except Exception as e:  # pylint: disable=broad-except  # a task model that fails says so on use
    print(f"warning: could not warm the task models ({e})", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  cli.defer_note_seq_notebook_utils()  # before inference imports note_seq
  from flax_musicvae import inference  # pylint: disable=g-import-not-at-top
  if importlib.util.find_spec("flask") is None:
    parser.exit(2, "error: the studio needs Flask: pip install -e '.[studio]'\n")
  from flax_musicvae.studio import engine, server  # pylint: disable=g-import-not-at-top
  inference.enable_compilation_cache()
  try:
    studio = make_studio(args)
    print(f"loading {studio.main.label} ...", flush=True)
    if args.no_warm:
      studio.model(studio.main)
    else:
      studio.warm()
    studio.attributes()
  except (engine.StudioError, inference.InputError, OSError, ValueError) as e:
    # ValueError: a checkpoint that does not fit the config, a broken attribute file
    parser.exit(2, f"error: {e}\n")
  if not args.no_warm:  # the GrooVAE task models load and compile while the page opens
    threading.Thread(target=_warm_tasks, args=(studio,), daemon=True).start()
  app = server.create_app(studio, args.max_upload_kb * 1024)
  host = f"[{args.host}]" if ":" in args.host else args.host
  print(f"studio: http://{host}:{args.port}/  (Ctrl+C stops it)", flush=True)
  try:
    app.run(host=args.host, port=args.port, threaded=True, use_reloader=False)
  except OSError as e:
    parser.exit(2, f"error: cannot listen on {args.host}:{args.port} ({e.strerror or e})\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
