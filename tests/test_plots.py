"""helu-train plot: CSVLogger metrics.csv fixtures in, valid PNGs out; clear errors without logs."""

import csv
from pathlib import Path

import pytest

from helu_lightning import commands
from helu_lightning.cli import cli
from helu_lightning.plots import main, plot_runs, read_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SITES = ["model.features.2", "model.features.10", "model.layer1.0.relu#0"]


def _write_run(directory, with_alpha: bool) -> None:
    """A metrics.csv as Lightning's CSVLogger writes it: one row per log call, empty cells elsewhere."""
    directory.mkdir(parents=True)
    columns = ["epoch", "step", "train/loss"]
    if with_alpha:
        columns.append("alpha")
    for stage in ("train", "val"):
        for stat in ("dead_fraction", "band_fraction"):
            columns += [f"monitor/{stage}/{stat}"] + [f"monitor/{stage}/{stat}/{s}" for s in SITES]
    rows = []
    for step in range(0, 40, 5):
        row = {"step": step, "train/loss": 2.0 / (step + 1)}
        if with_alpha:
            row["alpha"] = 0.1 - 0.002 * step
        rows.append(row)
        rows.append({"step": step, "epoch": step // 10,
                     **{c: 0.01 * step for c in columns if c.startswith("monitor/train")}})
    for epoch in range(4):
        rows.append({"step": epoch * 10 + 9, "epoch": epoch,
                     **{c: 0.1 + 0.02 * epoch for c in columns if c.startswith("monitor/val")}})
    with open(directory / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _check_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 5000, (path, len(data))


def test_read_metrics_splits_by_step_and_epoch(tmp_path):
    _write_run(tmp_path / "run", with_alpha=True)
    by_step, by_epoch = read_metrics(tmp_path / "run" / "metrics.csv")
    assert by_step["alpha"][:3] == [(0.0, 0.1), (5.0, pytest.approx(0.09)), (10.0, pytest.approx(0.08))]
    epochs, values = zip(*by_epoch["monitor/val/dead_fraction/model.features.10"])
    assert epochs == (0.0, 1.0, 2.0, 3.0) and values == pytest.approx([0.1, 0.12, 0.14, 0.16])
    assert "alpha" not in by_epoch


def test_plot_runs_overlays_runs_and_writes_pngs(tmp_path):
    _write_run(tmp_path / "relu" / "version_0", with_alpha=False)  # found below a parent directory
    _write_run(tmp_path / "helu", with_alpha=True)
    paths = plot_runs([tmp_path / "relu", tmp_path / "helu"], ["ReLU", "HeLU"], tmp_path / "plots")
    names = sorted(p.name for p in paths)
    assert names == ["alpha.png", "train_band_fraction.png", "train_dead_fraction.png",
                     "val_band_fraction.png", "val_dead_fraction.png"]
    for path in paths:
        _check_png(path)


def _write_hparams(directory, activation) -> None:
    """hparams.yaml beside metrics.csv, as the CSVLogger writes a model's saved hyperparameters."""
    from lightning.pytorch.core.saving import save_hparams_to_yaml

    save_hparams_to_yaml(directory / "hparams.yaml", {"activation": activation, "num_classes": 10})


def test_a_run_without_a_scheduler_is_drawn_at_its_fixed_alpha(tmp_path, monkeypatch):
    from helu_lightning import plots

    for name, activation in (("relu", "relu"), ("helu", {"name": "helu", "alpha": 0.2}), ("default", "helu")):
        _write_run(tmp_path / name, with_alpha=False)
        _write_hparams(tmp_path / name, activation)
    _write_run(tmp_path / "cosine", with_alpha=True)
    drawn = {}
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.setdefault(path.name, fig) and save(fig, path))
    paths = plot_runs([tmp_path / n for n in ("relu", "helu", "default", "cosine")],
                      ["ReLU", "HeLU", "HeLU default", "HeLU cosine"], tmp_path / "plots")
    assert "alpha.png" in {p.name for p in paths}
    _check_png(tmp_path / "plots" / "alpha.png")
    lines = {line.get_label(): line for line in drawn["alpha.png"].axes[0].get_lines()}
    assert set(lines) == {"HeLU (fixed 0.2)", "HeLU default (fixed 0.05)", "HeLU cosine"}  # ReLU has no alpha
    assert list(lines["HeLU (fixed 0.2)"].get_xdata()) == [0, 39] and list(lines["HeLU (fixed 0.2)"].get_ydata()) \
        == [0.2, 0.2]


def test_relu_runs_alone_write_no_alpha_png(tmp_path):
    _write_run(tmp_path / "relu", with_alpha=False)
    _write_hparams(tmp_path / "relu", "relu")
    paths = plot_runs([tmp_path / "relu"], ["ReLU"], tmp_path / "plots")
    assert "alpha.png" not in {p.name for p in paths} and paths


def test_plot_command_through_helu_train(tmp_path, capsys):
    _write_run(tmp_path / "helu", with_alpha=True)
    out = tmp_path / "out"
    commands.main(["plot", str(tmp_path / "helu"), "--labels", "HeLU", "--output_dir", str(out)])
    printed = capsys.readouterr().out.split()
    assert str(out / "alpha.png") in printed
    _check_png(out / "val_dead_fraction.png")


def test_errors_without_logs_or_with_wrong_labels(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        main([str(tmp_path / "empty"), "--output_dir", str(tmp_path / "out")])
    assert "no metrics.csv under" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot_runs([tmp_path / "missing"])
    _write_run(tmp_path / "a", with_alpha=True)
    with pytest.raises(ValueError, match="got 2 labels"):
        plot_runs([tmp_path / "a"], ["x", "y"], tmp_path / "out")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "metrics.csv").write_text("epoch,step,train/loss\n0,0,1.0\n")
    with pytest.raises(ValueError, match="no alpha or monitor metrics"):
        plot_runs([tmp_path / "plain"], output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_readme_pipeline_trains_on_digits_with_callbacks_then_plots(tmp_path):
    root = Path(__file__).resolve().parent.parent
    cli(["fit", "--config", str(root / "configs/offline.yaml"),
             "--config", str(root / "configs/callbacks_example.yaml"),
             "--trainer.max_epochs=2", "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2",
             "--trainer.log_every_n_steps=1",
             "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--test_after_fit=false",
             f"--trainer.default_root_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}"])
    by_step, by_epoch = read_metrics(tmp_path / "runs" / "helu_cosine" / "version_0" / "metrics.csv")
    alphas = [a for _, a in by_step["alpha"]]
    assert alphas[0] == pytest.approx(0.1) and alphas == sorted(alphas, reverse=True)
    assert [e for e, _ in by_epoch["monitor/val/dead_fraction/features.2"]] == [0.0, 1.0]
    paths = plot_runs([tmp_path / "runs" / "helu_cosine"], ["HeLU"], tmp_path / "plots")
    assert {"alpha.png", "val_dead_fraction.png", "train_band_fraction.png"} <= {p.name for p in paths}
