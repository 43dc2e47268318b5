"""Writers of numbers refuse NaN and inf wherever they are called from: a GLUE submission, the predictions CSV,
compare's CSVs, results.md and report.json never hold a non-finite value disguised as a number."""

from __future__ import annotations

import json
import math

import pytest
import torch

from helu_lightning.callbacks.predictions import PredictionWriter, format_predictions
from helu_lightning.compare.report import summary_rows, to_csv, to_markdown
from helu_lightning.data.glue import glue_task
from helu_lightning.errors import UserError
from helu_lightning.finite import finite_json

NON_FINITE = [math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("bad", NON_FINITE)
@pytest.mark.parametrize("task", ["stsb", "cola", "mnli", "rte"])
def test_glue_submission_refuses_a_non_finite_prediction(task: str, bad: float) -> None:
    spec = glue_task(task)
    with pytest.raises(UserError, match="example index 7 is (nan|inf|-inf), not a finite number"):
        format_predictions(spec, torch.tensor([3, 7]), torch.tensor([1.0, bad]))


def test_glue_submission_still_clamps_finite_scores() -> None:
    text = format_predictions(glue_task("stsb"), torch.tensor([0, 1]), torch.tensor([-0.5, 5.5]))
    assert text == "index\tprediction\n0\t0.000\n1\t5.000\n"


@pytest.mark.parametrize("bad", NON_FINITE)
def test_predictions_csv_refuses_a_non_finite_probability(bad: float) -> None:
    probabilities = torch.tensor([[0.2, 0.8], [bad, 0.5]])
    with pytest.raises(UserError, match="example index 11 is not finite"):
        PredictionWriter(top_k=2).to_csv(torch.tensor([10, 11]), probabilities)


@pytest.mark.parametrize("bad", NON_FINITE)
def test_compare_csv_and_report_json_refuse_non_finite_cells(bad: float) -> None:
    rows = [{"activation": "relu", "seed": 0, "test/loss": 0.3}, {"activation": "helu", "seed": 1, "test/loss": bad}]
    with pytest.raises(UserError, match=r"\[1\]\['test/loss'\] = .* not a finite number; nothing was written"):
        to_csv(rows, "runs.csv")
    with pytest.raises(UserError, match="not a finite number"):
        finite_json({"runs": rows}, "report.json")
    with pytest.raises(UserError, match="curve"):
        to_csv([{"activation": "relu", "curve": [0.1, bad]}])


def test_compare_summary_writes_undefined_statistics_as_empty_not_nan() -> None:
    rows = [{"activation": a, "seed": 0, "alpha": None, "m": v, "int8_delta": None, "seconds_per_epoch": 1.0,
             "val_dead_fraction": None, "val_band_fraction": None} for a, v in (("relu", 0.5), ("helu", 0.6))]
    summary = summary_rows(rows, ["relu", "helu"], "relu", "m")
    text = to_csv(summary)
    assert "nan" not in text.lower()
    assert summary[0]["std"] is None and summary[1]["ci_low"] is None
    assert json.loads(finite_json(summary, "report.json"))[1]["diff"] == pytest.approx(0.1)
    markdown = to_markdown(summary, "m", "relu", False)
    assert "nan" not in markdown.lower() and "| helu | 1 | 0.60 | +0.10 |" in markdown
    summary[1]["mean"] = math.inf
    with pytest.raises(UserError, match="results.md"):
        to_markdown(summary, "m", "relu", False)


def test_search_summary_never_writes_inf_and_never_picks_it_as_best(tmp_path) -> None:
    import optuna

    from helu_lightning.search.report import summary_rows as search_rows
    from helu_lightning.search.report import write_outputs

    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=math.inf))
    rows = search_rows(study, [])
    assert rows[0]["value"] is None and "inf" in rows[0]["state"]
    write_outputs(study, {}, [], tmp_path, "val/acc")
    text = (tmp_path / "summary.csv").read_text()
    assert "inf" not in text.split("\n", 1)[1].replace("(value inf)", "") and not (tmp_path / "best.yaml").exists()
