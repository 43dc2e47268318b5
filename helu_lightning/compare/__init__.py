"""``helu-train compare``: activation x seed experiments on one Optuna grid study, with paired statistics."""

from helu_lightning.compare.command import build_parser, main, run

__all__ = ["build_parser", "main", "run"]
