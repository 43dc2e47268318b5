"""``helu-train serve``: an export folder behind an HTTP endpoint (LitServe), with the preprocessing the export
records and none of the training code (torch comes in through the package's ``__init__``).

Modules: ``export_dir`` (reads the manifest's input contract), ``preprocess`` (the validation transform with PIL and
numpy), ``body`` (raw bytes and text into JSON, 4xx for bad bodies), ``api`` (the LitAPI) and ``command``.
"""

from .command import build_parser, run, serve

__all__ = ["build_parser", "run", "serve"]
