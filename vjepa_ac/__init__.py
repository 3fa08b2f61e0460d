"""vjepa-ac: latent world-model planning for Franka arms (application layer: the `vjepa-ac` command)."""

__version__ = "0.1.0"
