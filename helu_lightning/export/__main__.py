"""``python -m helu_lightning.export ...``: the same as ``helu-train export ...``."""

from .command import main

main()
