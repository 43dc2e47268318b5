"""Share of exact zeros in the FFN activations of each run's exported model (HeLU -> nn.ReLU, as `helu-train export`
serves it) on the test set, for a `helu-train compare` folder of a text study. Exact zeros are what a sparse
kernel can skip; GELU gives almost none.

    python benchmarks/ffn_zeros.py runs/compare/text_relufication [--batches 4] [--study_name helu-compare]

Reads the study (finished or still running: completed runs only), each completed run's best checkpoint (allow-listed
reader) and its fit config, counts over the real tokens
only (attention mask 1), writes ffn_zeros.csv and ffn_zeros.md into the folder and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import optuna
import torch
from torch import nn

from helu_lightning.cli import cli
from helu_lightning.compare.report import run_rows
from helu_lightning.compare.snapshot import read_study
from helu_lightning.errors import DataError, UserError
from helu_lightning.export import load_task, to_relu
from helu_lightning.io import atomic_write_text, read_utf8, regular_file
from helu_lightning.surgery import default_targets


def ffn_zero_share(model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> float:
    """Exact zeros over all FFN activation outputs at real (unpadded) tokens of ``batches``."""
    activations = [m for n, m in model.named_modules() if n.endswith("intermediate_act_fn")]
    if not activations:
        activations = [m for m in model.modules() if isinstance(m, (nn.ReLU, *default_targets()))]
    zeros, total, mask = 0, 0, None

    def hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
        nonlocal zeros, total
        keep = mask.bool().unsqueeze(-1).expand_as(output)
        zeros += int((output[keep] == 0).sum())
        total += int(keep.sum())

    handles = [m.register_forward_hook(hook) for m in activations]
    try:
        with torch.no_grad():
            for batch in batches:
                inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
                mask = inputs["attention_mask"]
                model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    return zeros / total


OUTPUTS = ("ffn_zeros.csv", "ffn_zeros.md")
FIX = "run helu-train compare on the folder again to rewrite it, or pass its --study_name"


def _record(trial: Path) -> dict[str, Any]:
    """A run's record.json, checked to name its best checkpoint (raises UserError naming the file)."""
    path = regular_file(trial / "record.json", fix=FIX)
    try:
        record = json.loads(read_utf8(path))
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not JSON (line {err.lineno}: {err.msg}); {FIX}") from None
    if not isinstance(record, dict) or not isinstance(record.get("best_checkpoint"), str):
        raise DataError(f"{path} names no best_checkpoint; {FIX}")
    return record


def check_outputs(folder: Path) -> None:
    """Refuse, before any work, an output path that is a link or not a regular file: writing would go through
    the link to a file this script does not own, or fail on a folder at the end of the run."""
    for name in OUTPUTS:
        path = folder / name
        if path.is_symlink():
            raise SystemExit(f"ffn_zeros.py: {path} is a link (to {os.readlink(path)}), not a file this script wrote; "
                             "remove the link and run again")
        if path.exists() and not path.is_file():
            raise SystemExit(f"ffn_zeros.py: {path} exists and is not a regular file; move it away and run again")


def _positive(text: str) -> int:
    """An argparse type: a whole number >= 1 (no batches would leave nothing to count)."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1; pass e.g. --batches 4")
    return int(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a helu-train compare --output_dir")
    parser.add_argument("--batches", type=_positive, default=4,
                        help="test batches per run (default 4; more than the test set holds: all of it)")
    parser.add_argument("--study_name", default="helu-compare",
                        help="the Optuna study in the folder's study.db (compare's default: helu-compare)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    check_outputs(args.folder)
    try:
        with read_study(args.folder, args.study_name) as study:
            runs = run_rows(study)
    except UserError as err:
        raise SystemExit(f"ffn_zeros.py: {err}") from None
    rows, test_batches = [], None
    for run in runs:
        trial = args.folder / "trials" / str(run["trial"])
        try:
            record = _record(trial)
            if test_batches is None:  # every run of a study shares the data config and split
                config = regular_file(trial / "config.yaml", fix=FIX)
                built = cli(args=["--config", str(config), f"--trainer.default_root_dir={trial}"],
                            run=False, trainer_defaults={"logger": False})
                built.datamodule.setup("test")
                test_batches = list(itertools.islice(built.datamodule.test_dataloader(), args.batches))
            task = load_task(record["best_checkpoint"])[0]
        except UserError as err:
            raise SystemExit(f"ffn_zeros.py: {err}") from None
        exported, _ = to_relu(task.model)
        share = ffn_zero_share(exported.eval(), test_batches)
        rows.append({"activation": run["activation"], "seed": run["seed"], "ffn_zero_share": share})
        print(f"{run['activation']:>28} seed {run['seed']}: {share:.4f}", file=sys.stderr)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["activation", "seed", "ffn_zero_share"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(args.folder / "ffn_zeros.csv", buffer.getvalue())
    lines = ["| activation | runs | exact zeros in FFN activations (%) mean ± std |", "|---|---|---|"]
    for label in dict.fromkeys(r["activation"] for r in rows):
        values = [100 * r["ffn_zero_share"] for r in rows if r["activation"] == label]
        spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
        lines.append(f"| {label} | {len(values)} | {statistics.mean(values):.2f}{spread} |")
    table = "\n".join(lines)
    examples = sum(len(batch["input_ids"]) for batch in test_batches or [])
    table += (f"\n\nOver the real tokens of {examples} test examples ({len(test_batches or [])} batches; --batches "
              f"{args.batches}), exported model (HeLU as ReLU).\n")
    atomic_write_text(args.folder / "ffn_zeros.md", table)
    print(table)


if __name__ == "__main__":
    main()
