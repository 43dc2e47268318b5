"""Callbacks: alpha scheduling, activation monitors, exact resumption, epoch counting, prediction writers and
compare's run recorder."""

from .alpha import SCHEDULES, AlphaScheduler, make_schedule
from .epochs import EpochCounter
from .monitor import ActivationMonitor, ActivationStats
from .predictions import GluePredictionWriter, PredictionWriter
from .record import RunRecorder
from .rng import RNGState

__all__ = ["SCHEDULES", "ActivationMonitor", "ActivationStats", "AlphaScheduler", "EpochCounter",
           "GluePredictionWriter", "PredictionWriter", "RNGState", "RunRecorder", "make_schedule"]
