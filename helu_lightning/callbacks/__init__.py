"""Callbacks: alpha scheduling and ReLU-family activation monitors."""
