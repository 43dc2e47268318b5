"""Callbacks: alpha scheduling and ReLU-family activation monitors."""

from .alpha import SCHEDULES, AlphaScheduler, make_schedule
from .monitor import ActivationMonitor, ActivationStats

__all__ = ["SCHEDULES", "ActivationMonitor", "ActivationStats", "AlphaScheduler", "make_schedule"]
