"""Reading one GLUE TSV file into columns, checking every row where it is read.

Files are read with ``csv.QUOTE_NONE`` (GLUE text holds bare quotes) as UTF-8 (a leading byte-order mark is
tolerated). A row with the wrong number of fields, a bad label, an STS-B score outside [0, 5] or a non-integer
index raises :class:`~helu_lightning.errors.DataError` naming the file, the line and the expected columns; QQP's
train/dev files hold a few such rows, so QQP skips them with one warning giving the count, as the Hugging Face
loaders do (``skip_malformed`` overrides this per run). Test files are never skipped: a submission must be complete.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError, MissingDataError
from ..io import read_utf8, regular_file
from .glue_tasks import GlueSplit, GlueTask

__all__ = ["read_glue_tsv"]

log = logging.getLogger(__name__)

# The test and diagnostic files hold sentences of any length; the csv default limit (128 KiB) is enough for
# GLUE, but a raised limit keeps one odd line from failing a whole run.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

STSB_RANGE = (0.0, 5.0)


@dataclass(frozen=True)
class _Layout:
    """Where a file's fields are: its field count, the position of each wanted column, and a description."""

    width: int
    position: dict[str | int, int]
    expected: str


def _text(path: Path, task: GlueTask, split: GlueSplit) -> str:
    if not (path.exists() or path.is_symlink()):
        raise MissingDataError(
            f"GLUE {task.directory} file {path} is missing; expected the official layout "
            f"<data_dir>/{task.directory}/{split.file} (download GLUE with its download_glue_data.py script)"
        )
    return read_utf8(regular_file(path, f"the GLUE {task.directory} {split.file} must be the downloaded TSV file"))


def _layout(path: Path, split: GlueSplit, task: GlueTask, rows: Iterator[list[str]]) -> _Layout:
    """The file's layout, read from its header line (consumed from ``rows``) or from the split's spec."""
    if not split.header:
        position = {c: c for c in (split.text_a, split.label) if c is not None}
        expected = f"{split.num_columns} tab-separated fields without a header (text in field {split.text_a + 1}"
        expected += f", label in field {split.label + 1})" if split.label is not None else ")"
        return _Layout(split.num_columns, position, expected)
    header = next(rows, None)
    if header is None:
        raise DataError(f"{path}, line 1: the file is empty; expected a header line and rows "
                        f"(the GLUE {task.directory} {split.file}); download the file again")
    wanted = [c for c in (split.text_a, split.text_b, split.label, split.index) if c is not None]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataError(f"{path}, line 1: header {header} lacks column(s) {missing}; "
                        f"expected the GLUE {task.directory} columns {wanted}")
    return _Layout(len(header), {c: header.index(c) for c in wanted}, "\t".join(header))


def _parse_label(value: str, task: GlueTask) -> int | float:
    if task.is_regression:
        try:
            score = float(value)
        except ValueError:
            raise ValueError(f"score {value!r} is not a number") from None
        low, high = STSB_RANGE
        if not (math.isfinite(score) and low <= score <= high):
            raise ValueError(f"score {value!r} lies outside [{low:g}, {high:g}]")
        return score
    if value in task.labels:
        return task.labels.index(value)
    if value.isdigit() and int(value) < task.num_labels:
        return int(value)
    raise ValueError(f"label {value!r} is not one of {list(task.labels)} or 0..{task.num_labels - 1}")


def _parse_index(value: str) -> int:
    try:
        index = int(value)
    except ValueError:
        raise ValueError(f"index {value!r} is not an integer") from None
    if not 0 <= index < 2**63:  # indices go into int64 tensors (and the submission); GLUE's count from 0
        raise ValueError(f"index {value!r} is not a whole number from 0 to 2**63 - 1")
    return index


def _parse_row(row: list[str], layout: _Layout, split: GlueSplit, task: GlueTask) -> dict[str, str | int | float]:
    """One row's ``text_a``, ``text_b``, ``label`` and ``idx`` (those the split has); ValueError says what is wrong."""
    if len(row) != layout.width:
        raise ValueError(f"{len(row)} fields instead of {layout.width}")
    fields = {"text_a": split.text_a, "text_b": split.text_b, "label": split.label, "idx": split.index}
    values = {key: row[layout.position[column]] for key, column in fields.items() if column is not None}
    if "label" in values:
        values["label"] = _parse_label(values["label"], task)
    if "idx" in values:
        values["idx"] = _parse_index(values["idx"])
    return values


def read_glue_tsv(path: str | Path, split: GlueSplit, task: GlueTask, skip_malformed: bool | None = None,
                  ) -> dict[str, list]:
    """Parse one GLUE TSV file into columns ``text_a``, ``text_b`` (pairs), ``label`` (labelled splits), ``idx``.

    Raises FileNotFoundError for a missing file and DataError naming file and line for a malformed row (unless it
    is skipped: ``skip_malformed``, default the task's choice; never in test files), a repeated index, an empty or
    header-only file, or bytes that are not UTF-8.
    """
    path = Path(path)
    complete = split.submission is not None
    skip = not complete and (task.skip_malformed if skip_malformed is None else skip_malformed)
    reader = csv.reader(io.StringIO(_text(path, task, split), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    layout = _layout(path, split, task, reader)
    columns: dict[str, list] = {key: [] for key in ("text_a", "text_b", "label") if getattr(split, key) is not None}
    columns["idx"] = []
    seen: dict[int, int] = {}
    skipped = 0
    for row in reader:
        if not row or row == [""]:
            continue
        try:
            values = _parse_row(row, layout, split, task)
        except ValueError as err:
            if skip:
                skipped += 1
                continue
            fix = "a submission needs every test row" if complete else "or pass skip_malformed=True to drop such rows"
            raise DataError(f"{path}, line {reader.line_num}: malformed row ({err}); expected columns: "
                            f"{layout.expected}. Fix or delete the row, {fix}.") from None
        values.setdefault("idx", len(columns["idx"]))
        if values["idx"] in seen and split.index is not None:
            raise DataError(f"{path}, line {reader.line_num}: index {values['idx']} repeats line "
                            f"{seen[values['idx']]}; every row needs its own index. Download the file again")
        seen[values["idx"]] = reader.line_num
        for key, value in values.items():
            columns[key].append(value)
    if not columns["idx"]:
        found = "the file is empty" if reader.line_num == 0 else "no data rows up to the end of the file"
        raise DataError(f"{path}, line {max(1, reader.line_num)}: {found} ({skipped} malformed row(s) skipped); "
                        f"the GLUE {task.directory} {split.file} holds thousands. Download the file again")
    if skipped:
        log.warning("skipped %d malformed row(s) of %s (wrong field count, label or index)", skipped, path)
    return columns
