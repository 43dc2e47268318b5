"""helu-train compare: activation specs, paired statistics against hand computations, an end-to-end comparison
on the digits (report, plots, INT8), resume after SIGKILL without repeating a run, two workers on one journal
file, and bad input stopped before any study exists."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
import torch
import yaml
from optuna.trial import TrialState

from helu_lightning.compare import build_parser, main, run
from helu_lightning.compare.arms import CompareError, parse_arm, parse_arms
from helu_lightning.compare.stats import mean_std, paired_difference
from helu_lightning.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "offline.yaml"
# One short epoch of 3 batches per run: about a second on one core.
FAST = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2",
        "--trainer.limit_test_batches=2"]
optuna.logging.set_verbosity(optuna.logging.WARNING)


def compare_argv(out: Path, *extra: str, activations=("relu", "helu:0.05"), seeds: int = 2,
                 storage: str | None = None) -> list[str]:
    argv = ["--config", str(CONFIG), "--output_dir", str(out), "--study_name", "t", "--seeds", str(seeds),
            "--activations", *activations]
    argv += ["--storage", storage] if storage else []
    return argv + FAST + list(extra)


def worker(out: Path, *extra: str, **kwargs) -> subprocess.Popen:
    """A `helu-train compare` worker process (no test, no INT8: the fits are what is shared)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "helu_lightning", "compare", *compare_argv(out, "--no_test", "--no_int8",
                                                                                *extra, **kwargs)]
    out.parent.mkdir(parents=True, exist_ok=True)
    log = open(out.parent / f"{out.name}-{time.monotonic_ns()}.log", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    proc.log = Path(log.name)  # proc.stdout is None: output goes to the file, which failure messages show
    return proc


def complete_points(trials: list[optuna.trial.FrozenTrial]) -> list[tuple[str, int]]:
    return sorted((t.params["activation"], t.params["seed"]) for t in trials if t.state == TrialState.COMPLETE)


# --- activation specs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, label, spec", [
    ("relu", "relu", {"name": "relu"}),
    ("helu:0.01", "helu:0.01", {"name": "helu", "alpha": 0.01}),
    ('{"name": "helu", "alpha": 0.02}', "helu:0.02", {"name": "helu", "alpha": 0.02}),
    ("{name: leaky_relu, negative_slope: 0.2}", "leaky_relu(negative_slope=0.2)",
     {"name": "leaky_relu", "negative_slope": 0.2}),
])
def test_every_spec_form_gives_a_label_and_spec(text, label, spec):
    arm = parse_arm(text)
    assert (arm.label, arm.spec, arm.auto) == (label, spec, False)


def test_auto_arms_take_alpha_per_run():
    for text in ("helu:auto", "{name: helu, alpha: auto}"):
        arm = parse_arm(text)
        assert (arm.label, arm.spec, arm.auto) == ("helu:auto", {"name": "helu"}, True)


@pytest.mark.parametrize("text, words", [
    ("relux", "relux"), ("helu:0", "alpha"), ("helu:-0.1", "alpha"), ("helu:abc", "after ':'"),
    ("{alpha: 0.1}", "'name'"), ("{name: [", "JSON/YAML"), ("", "empty"),
])
def test_bad_activations_are_user_errors(text, words):
    with pytest.raises(CompareError, match="(?s).*" + words.replace("[", r"\[")) as err:
        parse_arm(text)
    assert isinstance(err.value, UserError) and len(str(err.value)) < 400


def test_arms_need_two_distinct_and_a_listed_baseline():
    with pytest.raises(CompareError, match="at least two"):
        parse_arms(["relu"], "relu")
    with pytest.raises(CompareError, match="more than once"):
        parse_arms(["helu:0.05", "{name: helu, alpha: 0.05}"], None)
    with pytest.raises(CompareError, match="baseline 'gelu'"):
        parse_arms(["relu", "helu"], "gelu")
    assert parse_arms(["relu", "helu:0.05"], "helu:0.050")[1].label == "helu:0.05"


# --- statistics, against hand computations --------------------------------------------------------------------


def test_mean_and_sample_std_by_hand():
    mean, std = mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and std == pytest.approx(math.sqrt(5 / 3))  # squared deviations 5, over n - 1 = 3


def test_paired_difference_by_hand():
    treatment = {0: 0.90, 1: 0.85, 2: 0.88, 7: 0.5}  # seed 7 has no baseline run: not paired
    baseline = {0: 0.86, 1: 0.84, 2: 0.83}
    paired = paired_difference(treatment, baseline)
    # Differences 0.04, 0.01, 0.05: mean 1/30, sd sqrt(((1/150)^2 + (7/300)^2 + (1/60)^2) / 2).
    mean = 1 / 30
    sd = math.sqrt(((0.04 - mean) ** 2 + (0.01 - mean) ** 2 + (0.05 - mean) ** 2) / 2)
    t_crit = 4.302652729911275  # t(0.975, df=2), from a table
    half = t_crit * sd / math.sqrt(3)
    t_stat = mean / (sd / math.sqrt(3))
    p_two_sided = 1 - t_stat / math.sqrt(t_stat**2 + 2)  # Student t with 2 degrees of freedom in closed form
    assert paired.n == 3
    assert paired.mean == pytest.approx(mean)
    assert (paired.low, paired.high) == pytest.approx((mean - half, mean + half))
    assert paired.p_value == pytest.approx(p_two_sided, rel=1e-6)
    assert round(paired.p_value, 4) == 0.1091 and not paired.significant


def test_paired_difference_without_spread_or_pairs():
    same = paired_difference({0: 0.5, 1: 0.6}, {0: 0.5, 1: 0.6})
    assert (same.mean, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    shifted = paired_difference({0: 0.6, 1: 0.7}, {0: 0.5, 1: 0.6})
    assert shifted.p_value == 0.0 and shifted.significant
    lone = paired_difference({0: 0.6}, {0: 0.5, 1: 0.6})
    assert lone.n == 1 and math.isnan(lone.low) and math.isnan(lone.p_value)


# --- end to end -----------------------------------------------------------------------------------------------


def test_two_activations_two_seeds_on_the_digits(tmp_path, one_thread, capsys):
    out = tmp_path / "compare"
    argv = compare_argv(out, "--int8_batches", "1", activations=("relu", "helu:auto"))
    report = run(build_parser().parse_args(argv))
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{out / 'study.db'}")
    assert complete_points(study.trials) == [("helu:auto", 0), ("helu:auto", 1), ("relu", 0), ("relu", 1)]
    # Run seed by seed, so a comparison cut short still holds complete pairs.
    assert [(t.params["seed"], t.params["activation"]) for t in study.trials] == [
        (0, "relu"), (0, "helu:auto"), (1, "relu"), (1, "helu:auto")]
    rows = report["runs"]
    expected = [("relu", 0), ("relu", 1), ("helu:auto", 0), ("helu:auto", 1)]
    assert [(r["activation"], r["seed"]) for r in rows] == expected
    for row in rows:
        assert 0.0 <= row["test/acc"] <= 1.0 and row["seconds_per_epoch"] > 0 and row["epochs"] == 1
        assert 0.0 <= row["val_dead_fraction"] <= 1.0 and 0.0 <= row["val_band_fraction"] <= 1.0
        assert row["int8_delta"] == pytest.approx(row["int8"] - row["int8_fp32"]) and row["errors"] is None
        assert row["int8_method"] == "static"  # the method helu-train export picks for a CNN
        assert len(row["curve"]) == 1 and row["curve"][0] == pytest.approx(row["monitor_last"])
        # Dead-unit and band fractions per validation run, the last one being the end-of-fit value.
        assert row["dead_curve"] == [row["val_dead_fraction"]] and row["band_curve"] == [row["val_band_fraction"]]
    # helu:auto: each seed's run got suggest_alpha's value, and its fit config used it.
    for trial in study.trials:
        spec = trial.user_attrs["spec"]
        if trial.params["activation"] == "helu:auto":
            assert spec["name"] == "helu" and 0 < spec["alpha"] < 1
            config = yaml.safe_load((out / "trials" / str(trial.number) / "config.yaml").read_text())
            activation = config["model"]["init_args"]["activation"]
            assert (activation["name"], activation["alpha"]) == ("helu", spec["alpha"])
            assert config["seed_everything"] == trial.params["seed"]
            callbacks = [c["class_path"] for c in config["trainer"]["callbacks"]]
            assert "helu_lightning.callbacks.ActivationMonitor" in callbacks
    assert report["metric"] == "test/acc" and report["baseline"] == "relu"
    helu = next(s for s in report["summary"] if s["activation"] == "helu:auto")
    by_seed = {(r["activation"], r["seed"]): r["test/acc"] for r in rows}
    differences = [by_seed[("helu:auto", s)] - by_seed[("relu", s)] for s in (0, 1)]
    assert helu["diff"] == pytest.approx(sum(differences) / 2) and helu["pairs"] == 2
    assert json.loads((out / "report.json").read_text())["metric"] == "test/acc"
    markdown = (out / "results.md").read_text()
    assert "| helu:auto (α≈" in markdown and "paired t-test" in markdown
    assert "onnxruntime static-INT8 model (the method helu-train export picks)" in markdown
    for name in ("val_curves.png", "paired.png", "dead_units.png", "band.png"):
        assert (out / "plots" / name).read_bytes()[:4] == b"\x89PNG"
    assert "dead_curve" in (out / "runs.csv").read_text().splitlines()[0]
    assert "runs reported" in capsys.readouterr().out

    run(build_parser().parse_args(argv))  # complete: nothing runs again
    assert len(optuna.load_study(study_name="t", storage=f"sqlite:///{out / 'study.db'}").trials) == 4


def test_killed_comparison_resumes_without_repeating_a_finished_run(tmp_path, one_thread):
    out = tmp_path / "compare"
    storage = f"sqlite:///{out / 'study.db'}"
    slow = ("--trainer.max_epochs=3", "--trainer.limit_train_batches=4")
    proc = worker(out, *slow)
    deadline, running = time.monotonic() + 240, None
    while running is None and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if not (out / "study.db").exists():
            continue
        try:
            trials = optuna.load_study(study_name="t", storage=storage).trials
        except (KeyError, optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError):
            continue  # the worker is creating the study (and its tables) right now
        if any(t.state == TrialState.COMPLETE for t in trials):
            running = next((t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values), None)
    assert running is not None, proc.log.read_text()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = optuna.load_study(study_name="t", storage=storage).trials
    finished = {t.number: (t.params["activation"], t.params["seed"], t.value)
                for t in before if t.state == TrialState.COMPLETE}
    assert 1 <= len(finished) < 4

    main(compare_argv(out, "--no_test", "--no_int8", *slow))
    trials = optuna.load_study(study_name="t", storage=storage).trials
    assert trials[running.number].state == TrialState.FAIL
    assert complete_points(trials) == [("helu:0.05", 0), ("helu:0.05", 1), ("relu", 0), ("relu", 1)]
    kept = {t.number: (t.params["activation"], t.params["seed"], t.value)
            for t in trials if t.number in finished}
    assert kept == finished  # finished runs are kept, and no later trial fitted their points again
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4


@pytest.mark.slow
def test_two_workers_share_the_grid_on_one_journal_file(tmp_path):
    out = tmp_path / "compare"
    storage = f"journal://{tmp_path / 'study.log'}"
    slow = ("--trainer.max_epochs=2", "--trainer.limit_train_batches=4")
    procs = [worker(out, *slow, storage=storage, seeds=3) for _ in "ab"]
    for proc in procs:
        assert proc.wait(timeout=400) == 0, proc.log.read_text()[-3000:]
    journal = optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.log"))
    trials = optuna.load_study(study_name="t", storage=optuna.storages.JournalStorage(journal)).trials
    points = complete_points(trials)
    assert points == sorted((a, s) for a in ("relu", "helu:0.05") for s in range(3))  # each exactly once
    assert {t.user_attrs["worker"]["pid"] for t in trials if t.state == TrialState.COMPLETE} == {p.pid for p in procs}
    duplicates = [t for t in trials if t.state != TrialState.COMPLETE]
    assert all("duplicate_of" in t.user_attrs for t in duplicates)


# --- bad input: a short error, and no study -------------------------------------------------------------------


@pytest.mark.parametrize("change, words", [
    ({"--activations": ["relu", "nosuchact"]}, "nosuchact"),
    ({"--activations": ["relu", "helu:0"]}, "alpha"),
    ({"--seeds": ["1"]}, "at least 2 seeds"),
    ({"--config": ["BROKEN"]}, "not valid YAML"),
    ({"--config": ["MISSING"]}, "does not exist"),
    ({"--baseline": ["gelu"]}, "baseline 'gelu'"),
    ({"--config": ["UNKNOWN_KEY"]}, "rejected by `helu-train fit`"),
])
def test_bad_input_stops_before_any_study(tmp_path, capsys, change, words):
    broken = tmp_path / "broken.yaml"
    broken.write_text("trainer: {max_epochs: 1\nmodel: [")
    unknown_key = tmp_path / "unknown.yaml"
    unknown_key.write_text(CONFIG.read_text().replace("max_epochs: 20", "max_epochz: 20"))
    argv = compare_argv(tmp_path / "out", "--baseline", "relu")
    for flag, values in change.items():
        files = {"BROKEN": broken, "MISSING": tmp_path / "missing.yaml", "UNKNOWN_KEY": unknown_key}
        values = [str(files.get(v, v)) for v in values]
        start = argv.index(flag) + 1
        end = start + (2 if flag == "--activations" else 1)
        argv[start:end] = values
    with pytest.raises(UserError, match=words):
        run(build_parser().parse_args(argv))
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # jsonargparse prints what it rejected above ours
    assert last.startswith("helu-train compare: error:") and words in last and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # no study.db: nothing was created


def test_fashion_mnist_config_fits_on_idx_fixtures(tmp_path, one_thread):
    """The evidence config builds and trains a step on Fashion-MNIST IDX files (tests need no Debian package)."""
    from fixtures import write_fashion_mnist_idx

    from helu_lightning.cli import cli

    data = write_fashion_mnist_idx(tmp_path / "data", n=40, gzipped=True)
    run_ = cli(["fit", "--config", str(ROOT / "configs" / "fashion_mnist.yaml"), "--trainer.fast_dev_run", "true",
                "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false",
                "--data.init_args.data_dir", str(data), "--data.init_args.batch_size", "8"])
    assert run_.trainer.global_step == 1 and "test/acc" in run_.trainer.callback_metrics
    assert type(run_.model.model).__name__ == "CifarResNet"


def test_schedule_arm_trains_under_an_alpha_scheduler_with_curves_over_the_fit(tmp_path, one_thread):
    """An arm with an alpha schedule gets an AlphaScheduler in its fit config (other arms none); every run records
    the dead-unit and band fractions at each epoch's validation, and compare plots them."""
    out = tmp_path / "compare"
    schedule_arm = "{name: helu, alpha: 1, schedule: {name: linear, start: 1, end: 0.05}}"
    argv = compare_argv(out, "--no_int8", "--no_test", "--trainer.max_epochs=3", "--baseline", "none",
                        activations=("relu", schedule_arm), seeds=1)
    report = run(build_parser().parse_args(argv))
    rows = {r["activation"]: r for r in report["runs"]}
    assert set(rows) == {"relu", "helu:linear(1->0.05)"}
    for row in rows.values():
        assert len(row["curve"]) == len(row["dead_curve"]) == len(row["band_curve"]) == 3
        assert all(0.0 <= v <= 1.0 for v in row["dead_curve"] + row["band_curve"])
        assert row["dead_curve"][-1] == row["val_dead_fraction"]
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{out / 'study.db'}")
    for trial in study.trials:
        config = yaml.safe_load((out / "trials" / str(trial.number) / "config.yaml").read_text())
        schedulers = [c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("AlphaScheduler")]
        activation = config["model"]["init_args"]["activation"]
        assert "schedule" not in activation
        if trial.params["activation"] == "relu":
            assert schedulers == []
        else:
            assert schedulers == [{"class_path": "helu_lightning.callbacks.AlphaScheduler",
                                   "init_args": {"schedule": {"name": "linear", "start": 1, "end": 0.05},
                                                 "interval": "step"}}]
            last = torch.load(next((out / "trials" / str(trial.number)).rglob("last.ckpt")), weights_only=True)
            alphas = {v.item() for k, v in last["state_dict"].items() if k.endswith(".alpha")}
            assert alphas and max(alphas) < 0.5  # the schedule moved alpha from 1 towards 0.05
    for name in ("val_curves.png", "dead_units.png", "band.png"):
        assert (out / "plots" / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("text, words", [
    ("{name: relu, schedule: {name: linear, start: 1, end: 0.05}}", "needs name: helu"),
    ("{name: helu, schedule: {name: linaer, start: 1, end: 0.05}}", "Did you mean 'linear'"),
    ("{name: helu, schedule: 0.5}", "schedule is a mapping"),
])
def test_bad_schedule_arms_are_user_errors(text, words):
    with pytest.raises(CompareError, match=words):
        parse_arm(text)


def test_paired_plot_colours_each_seed_alike_in_both_panels(tmp_path, monkeypatch):
    """The right panel's dots are seeds, as the left panel's legend says, not one colour per activation."""
    import matplotlib

    matplotlib.use("Agg")
    from helu_lightning.compare import plots

    kept = []
    monkeypatch.setattr(plots, "_save", lambda figure, path: kept.append(figure) or path)
    rows = [{"activation": a, "seed": s, "test/acc": 0.5 + 0.1 * s + (0.05 if a != "relu" else 0)}
            for a in ("relu", "helu:0.05", "gelu") for s in (0, 1, 2)]
    summary = [{"activation": "relu"}] + [{"activation": a, "diff": 0.05, "ci_low": 0.0, "ci_high": 0.1}
                                          for a in ("helu:0.05", "gelu")]
    plots._paired(rows, summary, ["relu", "helu:0.05", "gelu"], "test/acc", "relu", tmp_path / "paired.png")
    left, right = kept[0].axes
    seed_colours = [matplotlib.colors.to_rgba(line.get_color()) for line in left.get_lines()]
    dots = [collection for collection in right.collections if len(collection.get_offsets()) == 3]
    assert len(dots) == 2
    for collection in dots:
        assert [tuple(c) for c in collection.get_facecolors()] == [c[:3] + (0.6,) for c in seed_colours]
