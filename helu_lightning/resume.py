"""Old home of ``RNGState``, kept because saved run configs (``config.yaml``) name
``helu_lightning.resume.RNGState`` as a class path; new configs use ``helu_lightning.callbacks.RNGState``."""

from .callbacks.rng import RNGState

__all__ = ["RNGState"]
