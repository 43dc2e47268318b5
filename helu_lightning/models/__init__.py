"""Backbones whose activations come only from an activation factory."""
