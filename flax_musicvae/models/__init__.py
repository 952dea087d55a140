"""Flax linen encoders, decoders and the MusicVAE model."""

from flax_musicvae.models.vae import MusicVAE, ModelSpec, build_model, dummy_batch

__all__ = ["MusicVAE", "ModelSpec", "build_model", "dummy_batch"]
