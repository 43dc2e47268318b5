"""What a newcomer meets on first use, run as a user runs it (``helu-train`` subprocesses, a real terminal where
progress is shown): the thread count behind the numbers, commands that say what they did or why not, progress of
long studies, a quiet console, docs that match the code, one copy of a checkpoint, and the house rules behind them.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import logging
import os
import pkgutil
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import helu_lightning

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
SCRIPT = Path(sys.executable).parent / "helu-train"
HELU_TRAIN = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "helu_lightning"]
# Short fits of the main job's config: 2 epochs of 3 batches, one validation and one test batch.
SHORT = ["--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "1",
         "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("HELU_DEBUG", None)
    env.update(extra)
    return env


def helu_train(*args: str, cwd: Path, timeout: int = 600, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*HELU_TRAIN, *args], cwd=cwd, env=_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def in_terminal(*args: str, cwd: Path, timeout: int = 600) -> tuple[int, str]:
    """Run ``helu-train args`` with a pseudo-terminal as stdin, stdout and stderr; its exit status and output."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([*HELU_TRAIN, *args], cwd=cwd, env=_env(), stdin=follower, stdout=follower,
                            stderr=follower, close_fds=True)
    os.close(follower)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # the terminal closed: the process has ended
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            raise AssertionError(f"helu-train {' '.join(args)} ran past {timeout} s")
    finally:
        os.close(leader)
    text = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    return proc.wait(), re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def _digits_fit(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return helu_train("fit", "--config", str(CONFIGS / "offline.yaml"), "--trainer.default_root_dir",
                      str(folder / "run"), "--trainer.max_epochs", "2", *SHORT, *args, cwd=folder)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The main job's config, shortened, fitted once: its folder (``run/`` inside)."""
    folder = tmp_path_factory.mktemp("digits")
    proc = _digits_fit(folder)
    assert proc.returncode == 0, output(proc)[-3000:]
    return folder


# --- 1. results depend on the thread count: configs fix it, runs print and record it ----------------------------

@pytest.mark.slow
def test_threads_setting_is_applied_printed_and_saved_in_config_yaml(tmp_path: Path) -> None:
    # torch's default here would be OMP_NUM_THREADS=2; the config's threads: 1 wins, and the run says so.
    proc = helu_train("fit", "--config", str(CONFIGS / "offline.yaml"), "--trainer.default_root_dir", str(tmp_path),
                      "--trainer.max_epochs", "1", *SHORT, cwd=tmp_path, OMP_NUM_THREADS="2")
    assert proc.returncode == 0, output(proc)[-3000:]
    assert "Threads set to 1" in output(proc)
    saved = yaml.safe_load(next(tmp_path.glob("lightning_logs/version_*/config.yaml")).read_text())
    assert saved["threads"] == 1
    # Without a setting, the run records the count it used (torch's default), so its config reruns the same way.
    probe = ("import torch; from helu_lightning.cli import cli; "
             f"built = cli(['--config', {str(CONFIGS / 'offline.yaml')!r}, '--threads', '{{}}', "
             f"'--trainer.default_root_dir', {str(tmp_path / 'probe')!r}], run=False); "
             "print('threads', torch.get_num_threads(), built.config['threads'])")
    for asked, expected in (("1", "threads 1 1"), ("3", "threads 3 3"), ("null", "threads 2 2")):
        run = subprocess.run([sys.executable, "-c", probe.format(asked)], cwd=tmp_path, capture_output=True,
                             text=True, env=_env(OMP_NUM_THREADS="2"), timeout=300)
        assert expected in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]
    bad = helu_train("fit", "--config", str(CONFIGS / "offline.yaml"), "--threads", "0", cwd=tmp_path)
    assert bad.returncode == 2 and "threads must be a whole number >= 1" in bad.stderr, output(bad)[-2000:]


@pytest.mark.parametrize("config", ["offline.yaml", "text_offline.yaml", "fashion_mnist.yaml", "plain_mlp_digits.yaml",
                                    "plain_mlp_fashion_mnist.yaml"])
def test_configs_behind_readme_numbers_fix_one_thread(config: str) -> None:
    # Their README numbers (0.996, the text run's range, the Results tables) were measured at one thread.
    assert yaml.safe_load((CONFIGS / config).read_text()).get("threads") == 1
    readme = (ROOT / "README.md").read_text()
    assert f"`{config}`" in readme.split("**Threads.**")[1].split("\n\n")[0]


# --- 2. commands say what they did, or why not ---------------------------------------------------------------------

@pytest.mark.parametrize("config", ["offline.yaml", "fashion_mnist.yaml", "cifar10.yaml", "cifar100.yaml",
                                    "imagenette.yaml", "imagenette_timm.yaml", "text_offline.yaml"])
def test_every_vision_and_text_config_writes_predictions(config: str) -> None:
    callbacks = yaml.safe_load((CONFIGS / config).read_text())["trainer"]["callbacks"]
    assert "helu_lightning.callbacks.PredictionWriter" in [c.get("class_path") for c in callbacks]


@pytest.mark.slow
def test_predict_with_the_main_config_writes_predictions_and_says_where(digits_run: Path) -> None:
    run = digits_run / "run"
    proc = helu_train("predict", "--config", str(CONFIGS / "offline.yaml"), "--ckpt_path",
                      str(run / "checkpoints" / "last.ckpt"), "--trainer.default_root_dir", str(run),
                      "--trainer.enable_progress_bar", "false", cwd=digits_run)
    assert proc.returncode == 0, output(proc)[-3000:]
    lines = (run / "predictions.csv").read_text().splitlines()
    assert lines[0].startswith("index,label,probability") and len(lines) == 1 + 270
    assert f"Predictions for 270 examples written to {run / 'predictions.csv'}" in output(proc)


@pytest.mark.slow
@pytest.mark.parametrize("ckpt", ["last", "run/checkpoints/last.ckpt"])
def test_resuming_a_finished_run_says_so_and_how_to_train_further(digits_run: Path, ckpt: str) -> None:
    logs = sorted(p.name for p in (digits_run / "run" / "lightning_logs").iterdir())
    proc = _digits_fit(digits_run, "--ckpt_path", ckpt)
    assert proc.returncode == 2, output(proc)[-3000:]
    assert "is a finished run: it trained 2 epoch(s) and --trainer.max_epochs is 2" in proc.stderr
    assert "--trainer.max_epochs 4 --ckpt_path last" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in (digits_run / "run" / "lightning_logs").iterdir()) == logs  # no new log folder
    assert "test/acc" not in proc.stdout  # nothing re-tested


@pytest.mark.slow
def test_raising_max_epochs_trains_a_finished_run_further(tmp_path: Path) -> None:
    assert _digits_fit(tmp_path).returncode == 0
    proc = _digits_fit(tmp_path, "--ckpt_path", "last", "--trainer.max_epochs", "3")
    assert proc.returncode == 0, output(proc)[-3000:]
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert last["epoch"] == 2


@pytest.fixture(scope="module")
def search_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    """A 3-trial search of the main job's config in a terminal: (folder, exit status, what the terminal showed)."""
    folder = tmp_path_factory.mktemp("search")
    status, shown = in_terminal("search", "--config", str(CONFIGS / "offline.yaml"), "--n_trials", "3",
                                "--output_dir", "runs/search", "--trainer.max_epochs", "2", *SHORT[:6], cwd=folder)
    return folder, status, shown


@pytest.mark.slow
def test_search_best_yaml_trains_the_winner_in_its_own_folder(search_run: tuple[Path, int, str]) -> None:
    folder, status, shown = search_run
    assert status == 0, shown[-3000:]
    best = yaml.safe_load((folder / "runs/search/best.yaml").read_text())
    assert best["trainer"]["default_root_dir"] == "runs/search/best"
    assert "train it with: helu-train fit --config runs/search/best.yaml" in shown
    (folder / "runs/offline/checkpoints").mkdir(parents=True)  # the searched config's own run, already there
    (folder / "runs/offline/checkpoints/last.ckpt").write_bytes(b"the main run")
    proc = helu_train("fit", "--config", "runs/search/best.yaml", "--trainer.max_epochs", "1", *SHORT, cwd=folder)
    assert proc.returncode == 0, output(proc)[-3000:]
    assert (folder / "runs/search/best/checkpoints/last.ckpt").is_file()
    assert sorted(os.listdir(folder / "runs/offline/checkpoints")) == ["last.ckpt"]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["fit", "validate", "predict"])
def test_a_trainer_command_without_config_names_config(tmp_path: Path, command: str) -> None:
    proc = helu_train(command, cwd=tmp_path)
    assert proc.returncode == 2
    assert f"pass a config with --config FILE, e.g. helu-train {command} --config configs/offline.yaml" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(tmp_path: Path, flag: str) -> None:
    proc = helu_train(flag, cwd=tmp_path)
    assert proc.returncode == 0, output(proc)
    expected = f"helu-train (helu-lightning) {helu_lightning.__version__}; torch {importlib.metadata.version('torch')}"
    assert proc.stdout.startswith(expected), proc.stdout


# --- 3. long studies show progress ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_search_shows_run_k_of_n_with_time_left_and_epochs(search_run: tuple[Path, int, str]) -> None:
    _, status, shown = search_run
    assert status == 0, shown[-3000:]
    assert "helu-train search: run 1 of 3\n" in shown
    assert re.search(r"helu-train search: run 2 of 3, about \d+ (s|min \d+ s) left", shown), shown[-3000:]
    assert re.search(r"helu-train search: run 3 of 3 \(trial 2: alpha [0-9.e-]+\): val/acc [0-9.]+ in \d+ s", shown)
    assert len(re.findall(r"^  epoch 1/2: val/acc [0-9.]+, train/loss [0-9.]+ \([0-9.]+ s\)$", shown, re.M)) == 3
    assert "Trial 0 finished" not in shown and "A new study created" not in shown


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str]:
    """A 2 x 2 comparison (with a helu:auto arm, whose calibration builds a second Trainer) in a terminal."""
    folder = tmp_path_factory.mktemp("compare")
    return in_terminal("compare", "--config", str(CONFIGS / "offline.yaml"), "--activations", "relu", "helu:auto",
                       "--seeds", "2", "--output_dir", "runs/compare", "--no_int8", "--trainer.max_epochs", "2",
                       *SHORT[:6], cwd=folder)


@pytest.mark.slow
def test_compare_shows_progress_and_not_optunas_best_trial(compare_run: tuple[int, str]) -> None:
    status, shown = compare_run
    assert status == 0, shown[-3000:]
    assert "helu-train compare: run 1 of 4\n" in shown
    for k in (2, 3, 4):
        assert re.search(rf"helu-train compare: run {k} of 4, about \d+ (s|min \d+ s) left", shown), shown[-3000:]
    assert "helu-train compare: run 4 of 4 (helu:auto, seed 1): val/acc" in shown
    assert len(re.findall(r"^  epoch 2/2: val/acc", shown, re.M)) == 4
    assert "Best is trial" not in shown and "Trial 0 finished" not in shown


@pytest.mark.slow
@pytest.mark.parametrize("command", [
    ["compare", "--activations", "relu", "gelu", "--seeds", "2", "--no_int8", "--output_dir", "out"],
    ["search", "--n_trials", "2", "--output_dir", "out", "--no_calibration"],
])
def test_a_failed_run_prints_one_error_line_not_a_traceback(tmp_path: Path, command: list[str]) -> None:
    status, shown = in_terminal(command[0], "--config", str(CONFIGS / "fashion_mnist.yaml"), *command[1:],
                                "--data.init_args.data_dir", str(tmp_path / "missing"), cwd=tmp_path)
    assert status == 2, shown[-3000:]
    errors = [line for line in shown.splitlines() if line.startswith(f"helu-train {command[0]}: error:")]
    assert len(errors) == 1 and "Fashion-MNIST not found" in errors[0], shown[-3000:]
    assert "Traceback" not in shown and "failed with parameters" not in shown
    assert len(shown.splitlines()) < 12, shown


# --- 4. a quiet console --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_run_header_is_printed_once_per_run(compare_run: tuple[int, str]) -> None:
    status, shown = compare_run
    assert status == 0, shown[-3000:]
    for line in ("Seed set to", "GPU available", "TPU available", "Threads set to 1"):
        assert shown.count(line) == 4, (line, shown[-4000:])
    assert "Restoring states from the checkpoint" not in shown  # the test of each best checkpoint: quiet


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The text config (MiniLM on BBC news), cut to one epoch of 3 batches: its run folder."""
    folder = tmp_path_factory.mktemp("text")
    proc = helu_train("fit", "--config", str(CONFIGS / "text_offline.yaml"), "--trainer.default_root_dir",
                      str(folder / "run"), "--trainer.max_epochs", "1", *SHORT, cwd=folder)
    assert proc.returncode == 0, output(proc)[-3000:]
    return folder / "run"


@pytest.mark.slow
def test_text_export_prints_no_torch_onnx_warnings(text_run: Path, tmp_path: Path) -> None:
    proc = helu_train("export", "--ckpt_path", str(text_run / "checkpoints" / "best.ckpt"), "--output_dir",
                      str(tmp_path / "exported"), "--format", "onnx", cwd=tmp_path)
    assert proc.returncode == 0, output(proc)[-3000:]
    assert "Warning" not in output(proc) and "axis name" not in output(proc), output(proc)[-3000:]


@pytest.mark.slow
def test_loading_a_text_checkpoint_prints_no_missing_head_report(text_run: Path) -> None:
    code = ("from helu_lightning.tasks.glue import GlueClassifier; "
            f"GlueClassifier.load_from_checkpoint({str(text_run / 'checkpoints' / 'best.ckpt')!r}); print('loaded')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0 and "loaded" in proc.stdout, output(proc)[-3000:]
    assert "MISSING" not in output(proc) and "newly initialized" not in output(proc), output(proc)[-3000:]


def test_a_load_report_naming_more_than_the_new_head_is_kept() -> None:
    from helu_lightning.models.text import _DropNewHeadReport

    def report(*keys: str) -> logging.LogRecord:
        rows = "\n".join(f"{key:<18}| \x1b[31mMISSING\x1b[0m | " for key in keys)
        text = f"BertForSequenceClassification LOAD REPORT from: x\nKey               | Status  | \n{rows}\n"
        return logging.LogRecord("transformers.modeling_utils", logging.WARNING, "", 0, text, None, None)

    drop = _DropNewHeadReport()
    assert not drop.filter(report("classifier.bias", "classifier.weight"))
    assert drop.filter(report("classifier.bias", "bert.encoder.layer.0.output.dense.weight"))
    assert drop.filter(report("bert.pooler.dense.weight"))


# --- 5. docs match the code; one copy of a checkpoint --------------------------------------------------------------

def _readme_block(marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return next(block for block in blocks if marker in block)


@pytest.mark.slow
def test_readme_suggest_alpha_snippet_gives_the_half_normal_quantile(tmp_path: Path) -> None:
    # With BatchNorm before each activation, the 0.1 quantile of |x| over x <= 0 is the half-normal's, 0.126.
    proc = subprocess.run([sys.executable, "-c", _readme_block("suggest_alpha(")], cwd=tmp_path, text=True,
                          capture_output=True, env=_env(), timeout=300)
    assert proc.returncode == 0, output(proc)[-3000:]
    global_alpha = float(proc.stdout.split()[0])
    assert 0.11 < global_alpha < 0.14, proc.stdout


def test_readme_lists_every_config() -> None:
    readme = (ROOT / "README.md").read_text()
    listed = readme.split("**Config files.**")[1].split("\n\n")[0]
    layout = readme.split("## Layout")[1].split("```")[1]
    for config in sorted(CONFIGS.glob("*.yaml")):
        assert f"`{config.name}`" in listed or config.name in ("monitor.yaml", "callbacks_example.yaml",
                                                              "text_offline.yaml"), config.name
        assert config.stem in layout, config.name


def _checkpoint_config(folder: Path, mode: str) -> Path:
    # monitor "epoch": mode max makes every epoch the best one, mode min only the first.
    config = yaml.safe_load((CONFIGS / "offline.yaml").read_text())
    config["trainer"]["callbacks"][0]["init_args"].update(monitor="epoch", mode=mode)
    config["model"]["init_args"]["backbone_options"]["width"] = 4
    path = folder / f"{mode}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "best_epoch"), [("max", 2), ("min", 0)])
def test_last_checkpoint_is_stored_once_when_it_is_the_best_epoch(tmp_path: Path, mode: str, best_epoch: int) -> None:
    config = _checkpoint_config(tmp_path, mode)
    args = ["--config", str(config), "--trainer.default_root_dir", "run", *SHORT]
    assert helu_train("fit", *args, "--trainer.max_epochs", "3", cwd=tmp_path).returncode == 0
    folder = tmp_path / "run" / "checkpoints"
    best = folder / f"epoch={best_epoch}-step={3 * (best_epoch + 1)}.ckpt"
    assert sorted(os.listdir(folder)) == sorted([best.name, "last.ckpt"])
    same = os.path.samefile(best, folder / "last.ckpt")
    assert same == (mode == "max")  # one file on disk when the best is the latest epoch
    assert torch.load(best, weights_only=True, map_location="cpu")["epoch"] == best_epoch  # never written through
    assert torch.load(folder / "last.ckpt", weights_only=True, map_location="cpu")["epoch"] == 2
    proc = helu_train("fit", *args, "--trainer.max_epochs", "4", "--ckpt_path", "last", cwd=tmp_path)
    assert proc.returncode == 0, output(proc)[-3000:]
    assert torch.load(folder / "last.ckpt", weights_only=True, map_location="cpu")["epoch"] == 3
    exported = helu_train("export", "--ckpt_path", str(folder / "last.ckpt"), "--output_dir", "exported",
                          "--format", "safetensors", cwd=tmp_path)
    assert exported.returncode == 0, output(exported)[-3000:]


@pytest.mark.slow
def test_text_run_stores_best_and_last_once(text_run: Path) -> None:
    folder = text_run / "checkpoints"
    assert sorted(os.listdir(folder)) == ["best.ckpt", "last.ckpt"]
    assert os.path.samefile(folder / "best.ckpt", folder / "last.ckpt")


# --- 6. house rules --------------------------------------------------------------------------------------------------

def _import_graph() -> dict[str, set[str]]:
    """helu_lightning's modules and the package modules each imports, lazy (function-level) imports included."""
    package = ROOT / "helu_lightning"
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
               for p in package.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        base = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                anchor = base.split(".")[: len(base.split(".")) - max(node.level - 1, 0)] if node.level else []
                source = ".".join([*anchor, node.module] if node.module else anchor)
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
            else:
                continue
            edges |= {target for target in targets if target in modules and target != name}
        graph[name] = edges
    return graph


def test_no_two_modules_import_each_other() -> None:
    graph = _import_graph()
    assert "helu_lightning.cli" in graph["helu_lightning.commands"]
    pairs = sorted((a, b) for a in graph for b in graph[a] if a < b and a in graph[b])
    assert pairs == []


@pytest.mark.slow
def test_python_m_helu_lightning_is_helu_train(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "helu_lightning", "--version"], cwd=tmp_path, capture_output=True,
                          text=True, env=_env(), timeout=300)
    assert proc.returncode == 0 and proc.stdout.startswith("helu-train (helu-lightning)"), output(proc)


def test_every_lightning_callback_lives_in_callbacks() -> None:
    from lightning.pytorch.callbacks import Callback

    for info in pkgutil.walk_packages(helu_lightning.__path__, "helu_lightning."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    defined = {cls for cls in _subclasses(Callback) if cls.__module__.startswith("helu_lightning.")}
    assert defined and not {f"{c.__module__}.{c.__qualname__}" for c in defined
                            if not c.__module__.startswith("helu_lightning.callbacks.")}


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


LOADER_OPTIONS = {"batch_size": "128", "pin_memory": "False", "persistent_workers": "False", "val_fraction": "0.1",
                  "seed": "0"}


@pytest.mark.slow
@pytest.mark.parametrize(("data_class", "own", "num_workers", "config"), [
    ("helu_lightning.data.CIFAR10DataModule", ["data_dir", "download", "augment"], "4", "cifar10.yaml"),
    ("helu_lightning.data.CIFAR100DataModule", ["data_dir", "download", "augment"], "4", "cifar100.yaml"),
    ("helu_lightning.data.FashionMNISTDataModule", ["data_dir", "download", "augment", "num_workers"], "0",
     "fashion_mnist.yaml"),
    ("helu_lightning.data.ImagenetteDataModule", ["data_dir", "image_size", "crop_fraction", "augment"], "4",
     "imagenette.yaml"),
])
def test_image_datamodules_state_only_what_differs_and_the_cli_shows_every_option(
    tmp_path: Path, data_class: str, own: list[str], num_workers: str, config: str
) -> None:
    module, name = data_class.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    stated = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    assert [p.name for p in stated if p.kind is not p.VAR_KEYWORD] == own or cls.__init__ is cls.__mro__[1].__init__
    shown = helu_train("fit", "--data.help", data_class, cwd=tmp_path)
    assert shown.returncode == 0, output(shown)[-3000:]
    for option, default in {**LOADER_OPTIONS, "num_workers": num_workers}.items():
        assert re.search(rf"--data\.{option} .*\n?.*default: {default}\)", shown.stdout), (option, shown.stdout)
    printed = helu_train("fit", "--config", str(CONFIGS / config), "--print_config", cwd=tmp_path)
    assert printed.returncode == 0, output(printed)[-3000:]
    init_args = yaml.safe_load(printed.stdout)["data"]["init_args"]
    assert {*LOADER_OPTIONS, "num_workers", *own} <= set(init_args)


def test_errors_show_a_folder_outside_the_working_directory_as_typed_and_best_in_our_words(tmp_path):
    """A run folder outside the working directory is named by its absolute path (not ../../../tmp/...), and
    --ckpt_path best in a new process says what best means instead of Lightning's text about the callback."""
    work, run = tmp_path / "work", tmp_path / "elsewhere" / "run"
    work.mkdir()
    config = ["--config", str(CONFIGS / "offline.yaml"), "--trainer.max_epochs", "1", *SHORT,
              "--trainer.default_root_dir", str(run)]
    first = helu_train("fit", *config, "--test_after_fit", "false", cwd=work)
    assert first.returncode == 0, output(first)[-2000:]
    again = helu_train("fit", *config, cwd=work)
    assert again.returncode == 2
    assert f"error: {run / 'checkpoints'} already holds a run's checkpoints" in again.stderr, again.stderr
    best = helu_train("fit", *config, "--ckpt_path", "best", cwd=work)
    assert best.returncode == 2
    message = best.stderr.strip().splitlines()[-1]
    assert "new helu-train process has none; pass the .ckpt file itself" in message, best.stderr
    assert "is not configured to save the best model" not in best.stderr
