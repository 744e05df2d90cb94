"""Backbones, the offline weight loader, checkpoints and the one tumour score."""
