"""Callbacks: alpha scheduling, activation monitors, exact resumption, epoch counting and prediction writers."""

from .alpha import SCHEDULES, AlphaScheduler, make_schedule
from .epochs import EpochCounter
from .monitor import ActivationMonitor, ActivationStats
from .predictions import GluePredictionWriter, PredictionWriter
from .rng import RNGState

__all__ = ["SCHEDULES", "ActivationMonitor", "ActivationStats", "AlphaScheduler", "EpochCounter",
           "GluePredictionWriter", "PredictionWriter", "RNGState", "make_schedule"]
