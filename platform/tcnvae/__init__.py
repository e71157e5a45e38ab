"""tcnvae: a TCN-VAE for wearable activity recognition, and the Ray Tune platform that searches it."""

__version__ = "0.1.0"
