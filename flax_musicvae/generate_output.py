"""Output writing of ``python -m flax_musicvae.generate``: file names, MIDI, WAV, PNG."""

from __future__ import annotations

import datetime
import pathlib

from flax_musicvae import inference
from flax_musicvae import render


class Writer:
  """Names, writes and reports the outputs of one run."""

  def __init__(self, args, config_name: str):
    self.args = args
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H%M%S")
    self.prefix = f"{config_name or 'model'}_{args.mode}_{stamp}"
    self.dir = pathlib.Path(args.output_dir)
    self.dir.mkdir(parents=True, exist_ok=True)

  def sequences(self, seqs, titles=None, suffix: str = "", shown=None) -> None:
    """A MIDI (and WAV) per sequence; one PNG of ``shown`` (default ``seqs``), titled."""
    if self.args.qpm:
      seqs = [inference.set_qpm(ns, self.args.qpm) for ns in seqs]
    n = len(seqs)
    for i, ns in enumerate(seqs):
      path = render.write_midi(ns, self.dir / f"{self.prefix}{suffix}-{i + 1:03d}-of-{n:03d}.mid",
                               chord_voicing=self.args.chord_voicing)
      print(f"wrote {path}")
      if self.args.wav:
        wav, engine = render.render_wav(path, path.with_suffix(".wav"))
        print(f"wrote {wav} ({engine})")
    if self.args.png and seqs:
      png = self.dir / f"{self.prefix}{suffix}.png"
      print(f"wrote {render.save_png(seqs if shown is None else shown, png, titles)}")
