"""benchmarks/alpha_choice.py: the grid's means, each chooser's pick, regret and compute share on a tiny fixture whose
numbers are worked out by hand; malformed files are refused naming the file."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from benchmark_scripts import load


def _module():
    return load("alpha_choice")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _fixture(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    grid = tmp_path / "grid"
    _write(grid / "runs.csv", "activation,seed,alpha,test/acc,epochs\n"
           "relu,0,,0.10,30\nrelu,1,,0.12,30\n"
           "helu:0.01,0,0.01,0.10,30\nhelu:0.01,1,0.01,0.14,30\n"
           "helu:0.1,0,0.1,0.50,30\nhelu:0.1,1,0.1,0.60,30\n"
           "helu:1.0,0,1.0,0.30,30\nhelu:1.0,1,1.0,0.40,30\n")
    _write(grid / "run_seconds.csv", "trial,activation,seed,seconds\n"
           + "".join(f"{i},x,0,10\n" for i in range(8)))
    auto = tmp_path / "auto"
    _write(auto / "runs.csv", "activation,seed,alpha,test/acc,epochs\n"
           "helu:auto,0,0.01,0.11,30\nhelu:auto,1,0.0316228,0.30,30\n")
    _write(auto / "calibration.csv", "seed,alpha,seconds,per_layer,alpha_at_0.9\n"
           "0,0.01,0.8,{},0.1\n1,0.0316228,2.4,{},1.0\n")
    good = tmp_path / "search_s0"
    _write(good / "summary.csv", "number,state,value,alpha,epochs,seconds\n"
           "0,COMPLETE,0.4,0.05,30,10\n1,PRUNED,0.1,0.5,1,1\n2,COMPLETE,0.55,0.1,30,10\n3,FAIL,,0.2,,\n")
    low = tmp_path / "search_s1"
    _write(low / "summary.csv", "number,state,value,alpha,epochs,seconds\n"
           "0,COMPLETE,0.3,0.001,30,20\n1,COMPLETE,0.5,0.2,30,20\n")
    return grid, auto, good, low


def test_table_by_hand(tmp_path: Path) -> None:
    grid, auto, good, low = _fixture(tmp_path)
    plot = tmp_path / "plots" / "choice.png"
    measured = _write(tmp_path / "picks" / "runs.csv", "activation,seed,alpha,test/acc\n"
                      "helu:0.2,0,0.2,0.45\nhelu:0.2,1,0.2,0.50\n").parent
    lines = _module().table(grid, auto, [good, low], plot=plot, measured=[measured]).splitlines()
    assert lines[0].startswith("grid: 8 runs, 240 epochs, 1.3 min summed run time")
    assert "| relu | 2 | 11.0 ± 1.4 | 10.0-12.0 |" in lines
    assert "| helu:0.1 **best** | 2 | 55.0 ± 7.1 | 50.0-60.0 |" in lines
    # auto: seed 0 on a grid point (12.0, regret 43.0, 0.8 s of 80 s = 1.00%), seed 1 halfway in log alpha between
    # 0.01 and 0.1 ((12 + 55) / 2 = 33.5, regret 21.5) at 3.00%: over the 2% budget
    assert "| helu:auto, seed 0 | 0.01 | 12.0 | 43.0 | 1.00% | - | not met |" in lines
    assert "| helu:auto, seed 1 | 0.03162 | 33.5 (between) | 21.5 | 3.00% | - | not met |" in lines
    # trained at its own alpha: 20.5 ± 13.4; alpha 0.1 minus it, seed by seed: 39 and 30 points, mean 34.5, sd 6.36,
    # t(1) = 12.71: half-width 57.2, p 0.083
    assert "| helu:auto, trained (2 seeds) | - | 20.5 ± 13.4 (measured) | +34.5 [-22.7, +91.7], p 0.083 (paired, vs " \
           "alpha 0.1) | - | - | - |" in lines
    # the pick 0.2 trained on the grid's seeds: alpha 0.1 minus it, 5 and 10 points: mean 7.5, half-width 31.8, p 0.2
    assert "| helu:0.2, trained (2 seeds) | - | 47.5 ± 3.5 (measured) | +7.5 [-24.3, +39.3], p 0.2 (paired, vs alpha " \
           "0.1) | - | - | - |" in lines
    # suggest_alpha at target band 0.9: alpha 0.1 and 1.0, mean 0.55 lies between 0.1 and 1.0 in log alpha
    # (log10 0.55 = -0.26: 74% of the way from 0.1 to 1.0): 55 - 0.74 * 20 = 40.2, regret 14.8
    assert "| suggest_alpha, target band 0.9 (2 seeds) | 0.55 (0.1-1) | 40.2 (between) | 14.8 | - | - | - |" in lines
    # search: the best completed trial (0.55 at alpha 0.1), 21 of 80 s and 61 of 240 epochs
    assert "| search search_s0 (4 trials) | 0.1 | 55.0 | 0.0 | 0.26x | 0.25x | met |" in lines
    # search_s1: its best (alpha 0.2, between 0.1 and 1.0: 55 - 0.301 * 20 = 49.0) took 40 s (0.50x); within
    # 0.35 x 80 = 28 s only its first trial fits, whose alpha 0.001 lies below the grid (ReLU-like 12.0); its pick
    # 0.2 was trained on the grid's seeds, 7.5 points below alpha 0.1, and that decides the goal
    assert "| search search_s1 (2 trials) | 0.2 | 49.0 (between) | 6.0; trained +7.5 | 0.50x | 0.25x | not met |" \
        in lines
    assert "| search search_s1, first 1 (<= 0.35x) | 0.001 | 12.0 (below grid) | 43.0 | 0.25x | 0.12x | not met |" \
        in lines
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_mean_between_and_outside_the_grid() -> None:
    mean_at = _module().mean_at
    means = {0.01: 0.2, 0.1: 0.6}
    assert mean_at(0.1, means) == (0.6, "")
    value, note = mean_at(0.01 * 10 ** 0.25, means)
    assert math.isclose(value, 0.3) and note == "between"
    assert mean_at(0.5, means) == (0.6, "above grid")
    assert mean_at(0.001, means) == (0.2, "below grid")


def test_a_cell_that_is_not_a_number_is_refused(tmp_path: Path) -> None:
    grid, *_ = _fixture(tmp_path)
    text = (grid / "runs.csv").read_text().replace("helu:0.1,1,0.1,0.60", "helu:0.1,1,0.1,high")
    (grid / "runs.csv").write_text(text)
    with pytest.raises(SystemExit, match=r"runs.csv line 7, test/acc is 'high', not a number"):
        _module().table(grid, None, [])


def test_a_search_without_a_completed_trial_is_refused(tmp_path: Path) -> None:
    grid, _, good, _ = _fixture(tmp_path)
    (good / "summary.csv").write_text("number,state,value,alpha,epochs,seconds\n0,PRUNED,0.1,0.5,1,1\n")
    with pytest.raises(SystemExit, match="summary.csv has no completed trial"):
        _module().table(grid, None, [good])


def test_a_search_with_no_trial_done_within_the_budget_says_so(tmp_path: Path) -> None:
    grid, _, good, _ = _fixture(tmp_path)
    (good / "summary.csv").write_text("number,state,value,alpha,epochs,seconds\n0,COMPLETE,0.55,0.1,30,50\n")
    lines = _module().table(grid, None, [good]).splitlines()
    assert "| search search_s0 (1 trials) | 0.1 | 55.0 | 0.0 | 0.62x | 0.12x | not met |" in lines
    assert "| search search_s0, within 0.35x | no trial completed | - | - | - | - | not met |" in lines


def test_a_missing_column_is_refused(tmp_path: Path) -> None:
    grid, *_ = _fixture(tmp_path)
    (grid / "run_seconds.csv").write_text("trial,activation,seed\n0,x,0\n")
    with pytest.raises(SystemExit, match="run_seconds.csv has no rows or lacks the columns"):
        _module().table(grid, None, [])


def test_readme_alpha_tables_are_the_committed_files() -> None:
    # The README's "Choosing alpha" tables are printed by alpha_choice.py from docs/results, not typed.
    root = Path(__file__).resolve().parents[1]
    results = root / "docs" / "results"
    searches = [folder for name in ("alpha_search", "alpha_span_search")
                for folder in sorted(results.glob(f"{name}_digits_d8_s*"))]
    picks = [results / "alpha_picks_digits_d8", results / "alpha_picks2_digits_d8"]
    printed = _module().table(results / "alpha_grid_digits_d8", results / "alpha_auto_digits_d8", searches,
                              measured=picks)
    rows = [line for line in printed.splitlines() if line.startswith("| ")]
    assert len(rows) > 20
    readme = (root / "README.md").read_text().splitlines()
    assert [line for line in rows if line not in readme] == []
