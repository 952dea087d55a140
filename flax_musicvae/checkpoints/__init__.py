"""Checkpoint interchange: TF1 TensorBundle read/write, Magenta import, magenta.js export."""
