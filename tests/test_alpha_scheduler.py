"""AlphaScheduler: schedule values against hand-computed numbers, groups, logging, exact resume, YAML, errors."""

import math
import pickle
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.demos.boring_classes import BoringModel
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helu_lightning.activations import HeLU
from helu_lightning.callbacks import AlphaScheduler, make_schedule
from helu_lightning.cli import cli
from helu_lightning.errors import UserError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
BORING = ["--model", "lightning.pytorch.demos.boring_classes.BoringModel",
          "--data", "lightning.pytorch.demos.boring_classes.BoringDataModule"]


def halving(t: int, total: int, start: float = 0.2) -> float:
    """A user schedule for the 'callable' tests: start / 2**t."""
    return start / 2**t


class TinyNet(pl.LightningModule):
    def __init__(self, act: type[nn.Module] = HeLU) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Linear(4, 8), act(), nn.Linear(8, 8), act(), nn.Linear(8, 2))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.model(x), y)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        data = TensorDataset(torch.randn(32, 4, generator=g), torch.randint(0, 2, (32,), generator=g))
        return DataLoader(data, batch_size=4)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Recorder(pl.Callback):
    """Records (global_step, alpha of each HeLU) at every batch, after the scheduler has run."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.trace: list[tuple[int, tuple[float, ...]]] = []
        self.stop_at = stop_at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        alphas = tuple(float(m.alpha) for m in pl_module.modules() if isinstance(m, HeLU))
        self.trace.append((trainer.global_step, alphas))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.stop_at:
            trainer.should_stop = True


def _trainer(tmp_path, callbacks, **kwargs) -> pl.Trainer:
    options = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    options.update(kwargs)
    return pl.Trainer(callbacks=callbacks, **options)


@pytest.mark.parametrize(
    ("spec", "t", "total", "expected"),
    [
        ({"name": "constant", "value": 0.03}, 7, 10, 0.03),
        ({"name": "linear", "start": 0.1, "end": 0.01}, 3, 10, 0.1 - 0.09 * 3 / 9),
        ({"name": "linear", "start": 0.1, "end": 0.01}, 9, 10, 0.01),  # the last of 10 steps ends at end
        ({"name": "linear", "start": 0.1, "end": 0.01}, 25, 10, 0.01),
        ({"name": "cosine", "start": 0.1, "end": 0.01}, 0, 8, 0.1),
        ({"name": "cosine", "start": 0.1, "end": 0.01}, 2, 8, 0.01 + 0.09 * (1 + math.cos(math.pi * 2 / 7)) / 2),
        ({"name": "cosine", "start": 0.1, "end": 0.01}, 7, 8, 0.01),
        ({"name": "cosine", "start": 0.1, "end": 0.01}, 0, 1, 0.01),  # a one-step run: its only step is the last
        ({"name": "exponential", "start": 0.1, "gamma": 0.5, "end": 0.02}, 1, 0, 0.05),
        ({"name": "exponential", "start": 0.1, "gamma": 0.5, "end": 0.02}, 2, 0, 0.025),
        ({"name": "exponential", "start": 0.1, "gamma": 0.5, "end": 0.02}, 3, 0, 0.02),
        ({"name": "step", "values": [0.1, 0.05, 0.01], "milestones": [3, 6]}, 2, 0, 0.1),
        ({"name": "step", "values": [0.1, 0.05, 0.01], "milestones": [3, 6]}, 3, 0, 0.05),
        ({"name": "step", "values": [0.1, 0.05, 0.01], "milestones": [3, 6]}, 9, 0, 0.01),
        ({"name": "warmup", "start": 0.01, "peak": 0.1, "end": 0.02, "warmup": 4, "decay": "linear"}, 2, 12, 0.055),
        ({"name": "warmup", "start": 0.01, "peak": 0.1, "end": 0.02, "warmup": 4, "decay": "linear"}, 8, 12,
         0.1 - 0.08 * 4 / 7),
        ({"name": "warmup", "start": 0.01, "peak": 0.1, "end": 0.02, "warmup": 4, "decay": "linear"}, 11, 12, 0.02),
        ({"name": "warmup", "start": 0.01, "peak": 0.1, "end": 0.02, "warmup": 4}, 8, 12,
         0.02 + 0.08 * (1 + math.cos(math.pi * 4 / 7)) / 2),
        ({"name": "warmup", "start": 0.01, "peak": 0.1, "end": 0.02, "warmup": 4}, 11, 12, 0.02),
        ({"name": "callable", "fn": f"{__name__}.halving", "kwargs": {"start": 0.4}}, 3, 0, 0.05),
        (halving, 2, 0, 0.05),
    ],
)
def test_schedule_values(spec, t, total, expected):
    assert make_schedule(spec)(t, total) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "cosin", "start": 0.1, "end": 0.01}, "Did you mean 'cosine'"),
        ({"name": "nope"}, "constant, linear, cosine, exponential, step, warmup, callable"),
        ({"name": "linear", "start": -0.1, "end": 0.01}, "start must be a positive finite number, got -0.1"),
        ({"name": "linear", "start": 0.1, "end": 0.0}, "end must be a positive finite number, got 0.0"),
        ({"name": "constant", "value": float("nan")}, "value must be a positive finite number, got nan"),
        ({"name": "cosine", "start": float("inf"), "end": 0.01}, "got inf"),
        ({"name": "step", "values": [0.1], "milestones": [3]}, "one more value than milestones"),
        ({"name": "step", "values": [0.1, 0.2, 0.3], "milestones": [5, 3]}, "strictly increasing"),
        ({"name": "linear", "start": 0.1, "end": 0.01, "total": 0}, "total must be an integer >= 1"),
        ({"name": "linear", "start": 0.1, "stop": 0.01}, "got parameters ['start', 'stop']"),
        ({"name": "callable", "fn": "no_such_module_xyz.f"}, "cannot import fn 'no_such_module_xyz.f'"),
        ({"start": 0.1}, "mapping with a 'name' key"),
    ],
)
def test_bad_schedules_are_rejected(spec, message):
    with pytest.raises(ValueError, match=None) as err:
        make_schedule(spec)
    assert message in str(err.value)


def test_bad_scheduler_settings():
    with pytest.raises(ValueError, match="interval must be 'step' or 'epoch'"):
        AlphaScheduler({"name": "constant", "value": 0.1}, interval="batch")
    with pytest.raises(ValueError, match="needs a schedule"):
        AlphaScheduler()
    with pytest.raises(ValueError, match="not a valid regex"):
        AlphaScheduler(groups=[{"pattern": "(", "schedule": {"name": "constant", "value": 0.1}}], match="regex")


def test_pattern_matching_no_module_names_pattern_and_modules():
    scheduler = AlphaScheduler(groups=[{"pattern": "*layer9*", "schedule": {"name": "constant", "value": 0.1}}])
    with pytest.raises(ValueError) as err:
        scheduler.setup(None, TinyNet(), "fit")
    assert "'*layer9*'" in str(err.value) and "model.1, model.3" in str(err.value)


def test_model_without_helu_is_rejected():
    with pytest.raises(ValueError, match="found no HeLU module in TinyNet"):
        AlphaScheduler({"name": "constant", "value": 0.1}).setup(None, TinyNet(nn.ReLU), "fit")


def test_schedule_returning_bad_alpha_fails_with_context(tmp_path):
    scheduler = AlphaScheduler(lambda t, total: 0.1 - 0.05 * t)
    with pytest.raises(ValueError, match=r"gave alpha=-?0\.0.* at step 2"):
        _trainer(tmp_path, [scheduler], max_steps=4).fit(TinyNet())


def test_per_step_groups_follow_their_schedules_and_log(tmp_path):
    scheduler = AlphaScheduler(
        schedule={"name": "linear", "start": 0.1, "end": 0.02},
        groups=[{"pattern": r"\.1$", "schedule": {"name": "step", "values": [0.3, 0.2], "milestones": [3]},
                 "name": "first"}],
        match="regex",
    )
    recorder = Recorder()
    trainer = _trainer(tmp_path, [scheduler, recorder], max_steps=8, log_every_n_steps=1)
    trainer.fit(TinyNet())
    assert [t for t, _ in recorder.trace] == list(range(8))
    for t, (first, second) in recorder.trace:
        assert first == pytest.approx(0.3 if t < 3 else 0.2)
        assert second == pytest.approx(0.1 + (0.02 - 0.1) * t / 7, rel=1e-6)
    assert float(trainer.callback_metrics["alpha/first"]) == pytest.approx(0.2)
    assert float(trainer.callback_metrics["alpha/default"]) == pytest.approx(0.02, rel=1e-6)


def test_per_epoch_interval(tmp_path):
    scheduler = AlphaScheduler({"name": "exponential", "start": 0.1, "gamma": 0.5}, interval="epoch")
    recorder = Recorder()
    trainer = _trainer(tmp_path, [scheduler, recorder], max_epochs=3, limit_train_batches=2)
    trainer.fit(TinyNet())
    assert [a[0] for _, a in recorder.trace] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    assert float(trainer.callback_metrics["alpha"]) == pytest.approx(0.025)


def test_resume_continues_the_schedule_exactly(tmp_path):
    spec = {"name": "cosine", "start": 0.1, "end": 0.01}
    full = Recorder()
    pl.seed_everything(0)
    _trainer(tmp_path / "full", [AlphaScheduler(spec), full], max_steps=12).fit(TinyNet())

    first = Recorder(stop_at=5)
    pl.seed_everything(0)
    trainer = _trainer(tmp_path / "part", [AlphaScheduler(spec), first], max_steps=12)
    trainer.fit(TinyNet())
    ckpt = tmp_path / "stopped.ckpt"
    trainer.save_checkpoint(ckpt)
    state = torch.load(ckpt, weights_only=True)["callbacks"]
    assert [s["totals"] for s in state.values() if "totals" in s] == [{"default": 12}]

    second = Recorder()
    _trainer(tmp_path / "part", [AlphaScheduler(spec), second], max_steps=12).fit(TinyNet(), ckpt_path=ckpt)
    assert [t for t, _ in first.trace] == [0, 1, 2, 3, 4]
    assert first.trace + second.trace == full.trace
    assert full.trace[-1] == (11, (0.01, 0.01))

    # A resumed run that trains longer keeps the schedule length it started with: alpha stays at the end value.
    longer = Recorder()
    _trainer(tmp_path / "part", [AlphaScheduler(spec), longer], max_steps=16).fit(TinyNet(), ckpt_path=ckpt)
    assert longer.trace[:7] == full.trace[5:]
    assert [a for _, a in longer.trace[7:]] == [(pytest.approx(0.01),) * 2] * 4


def test_resume_with_other_groups_is_rejected():
    scheduler = AlphaScheduler({"name": "constant", "value": 0.1})
    with pytest.raises(ValueError, match="resume with the same scheduler settings"):
        scheduler.load_state_dict({"interval": "step", "totals": {"other": 5}})


def test_yaml_callbacks_parse_through_the_cli(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        "trainer:\n"
        "  callbacks:\n"
        "    - class_path: helu_lightning.callbacks.AlphaScheduler\n"
        "      init_args:\n"
        "        schedule: {name: warmup, start: 0.01, peak: 0.1, end: 0.02, warmup: 100}\n"
        "        groups:\n"
        "          - {pattern: '*layer1.*', schedule: {name: constant, value: 0.05}}\n"
        "        interval: epoch\n"
    )
    parsed = cli(["--config", str(config), *BORING, f"--trainer.default_root_dir={tmp_path}"], run=False)
    (scheduler,) = [c for c in parsed.trainer.callbacks if isinstance(c, AlphaScheduler)]
    assert scheduler.interval == "epoch"
    assert [g.name for g in scheduler.groups] == ["*layer1.*", "default"]
    assert scheduler.groups[1].schedule(50, 1000) == pytest.approx(0.055)
    assert isinstance(parsed.model, BoringModel)


@pytest.mark.parametrize(("name", "expected"), [("callbacks_example.yaml", {"AlphaScheduler", "ActivationMonitor"}),
                                              ("monitor.yaml", {"ActivationMonitor"})])
def test_callback_configs_append_to_the_task_callbacks(tmp_path, name, expected):
    task = tmp_path / "task.yaml"
    task.write_text("trainer:\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.LearningRateMonitor\n")
    parsed = cli(["--config", str(task), "--config", str(CONFIGS / name), *BORING], run=False)
    kinds = {type(c).__name__ for c in parsed.trainer.callbacks}
    assert expected | {"LearningRateMonitor"} <= kinds
    assert not {"AlphaScheduler", "ActivationMonitor"} - expected & kinds
    assert type(parsed.trainer.logger).__name__ == "CSVLogger"


def test_scheduler_pickles_for_ddp_spawn():
    scheduler = AlphaScheduler(
        schedule={"name": "warmup", "start": 0.01, "peak": 0.1, "end": 0.02, "warmup": 4},
        groups=[{"pattern": "*.1", "schedule": {"name": "callable", "fn": f"{__name__}.halving"}}],
    )
    copy = pickle.loads(pickle.dumps(scheduler))
    assert [g.schedule(2, 12) for g in copy.groups] == pytest.approx([0.05, 0.055])


def test_an_explicit_total_wins_over_the_run_length_per_group(tmp_path):
    """A group with its own 'total' reaches its end then; a group without one spans the whole run (max_steps)."""
    scheduler = AlphaScheduler(
        schedule={"name": "linear", "start": 0.1, "end": 0.02},
        groups=[{"pattern": r"\.1$", "schedule": {"name": "linear", "start": 0.3, "end": 0.1, "total": 4},
                 "name": "short"}],
        match="regex",
    )
    recorder = Recorder()
    trainer = _trainer(tmp_path, [scheduler, recorder], max_steps=8)
    trainer.fit(TinyNet())
    for t, (short, whole) in recorder.trace:
        assert short == pytest.approx(0.3 - 0.2 * min(t, 3) / 3, rel=1e-6)  # its 4 steps are 0..3
        assert whole == pytest.approx(0.1 - 0.08 * t / 7, rel=1e-6)


@pytest.mark.parametrize(("spec", "ok"), [({"name": "constant", "value": 0.1}, True),
                                          ({"name": "step", "values": [0.2, 0.1], "milestones": [2]}, True),
                                          ({"name": "exponential", "start": 0.1, "gamma": 0.5, "end": 0.01}, True),
                                          ({"name": "exponential", "start": 0.1, "gamma": 0.5}, True),
                                          ({"name": "linear", "start": 0.1, "end": 0.02}, False),
                                          ({"name": "cosine", "start": 0.1, "end": 0.02}, False)])
def test_a_run_without_a_length_needs_a_total_only_for_schedules_that_end(tmp_path, spec, ok):
    scheduler = AlphaScheduler(spec)
    trainer = _trainer(tmp_path, [scheduler], max_epochs=-1, max_steps=-1, max_time="00:00:00:02",
                       limit_train_batches=2)
    if ok:
        trainer.fit(TinyNet())
    else:
        with pytest.raises(UserError, match="has no fixed length .* give the schedule a 'total'"):
            trainer.fit(TinyNet())


def test_a_shrinking_exponential_without_end_levels_off_above_zero():
    """0.1 * 0.5**t underflows to 0.0 after ~1,070 steps; HeLU refuses alpha 0, so the schedule must not reach it."""
    schedule = make_schedule({"name": "exponential", "start": 0.1, "gamma": 0.5})
    assert schedule(3, 0) == pytest.approx(0.0125)
    assert all(0 < schedule(t, 0) <= 0.1 for t in (1_000, 1_100, 10**6))
    HeLU(schedule(10**6, 0))  # a valid alpha: ReLU's gradient in practice


def _by_hand(name: str, t: int, total: int) -> float:
    """The schedules of the end-exact tests written out: 0.1 -> 0.02 over steps (or epochs) 0 .. total-1."""
    p = t / (total - 1)
    if name == "linear":
        return 0.1 + (0.02 - 0.1) * p
    if name == "cosine":
        return 0.02 + (0.1 - 0.02) * (1 + math.cos(math.pi * p)) / 2
    if t < 1:  # warmup: 0.05 -> 0.1 over step 0, then linear decay to 0.02 over steps 1 .. total-1
        return 0.05
    return 0.1 + (0.02 - 0.1) * (t - 1) / (total - 2)


_END_SPECS = {"linear": {"name": "linear", "start": 0.1, "end": 0.02},
              "cosine": {"name": "cosine", "start": 0.1, "end": 0.02},
              "warmup": {"name": "warmup", "start": 0.05, "peak": 0.1, "end": 0.02, "warmup": 1, "decay": "linear"}}


class StepRecorder(pl.Callback):
    """The alpha each optimizer step (or epoch) used: read at the batch where it steps, after the scheduler ran."""

    def __init__(self) -> None:
        self.used: dict[int, float] = {}
        self.epochs: dict[int, float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        alpha = float(next(m for m in pl_module.modules() if isinstance(m, HeLU)).alpha)
        self.used.setdefault(trainer.global_step, alpha)
        assert self.used[trainer.global_step] == alpha  # every micro-batch of an accumulated step: one alpha
        self.epochs.setdefault(trainer.current_epoch, alpha)


# (interval, Trainer options, the run's length in that unit counted by hand; TinyNet has 8 batches per epoch)
_RUNS = [
    ("step", {"max_steps": 7}, 7),
    ("step", {"max_epochs": 2, "limit_train_batches": 3, "accumulate_grad_batches": 2}, 4),  # ceil(3/2) per epoch
    ("step", {"max_epochs": 3, "accumulate_grad_batches": 3}, 9),
    ("step", {"max_epochs": 5, "max_steps": 6, "limit_train_batches": 4}, 6),  # max_steps ends the run first
    ("epoch", {"max_epochs": 4, "limit_train_batches": 2}, 4),
    ("epoch", {"max_epochs": 10, "max_steps": 5, "limit_train_batches": 2}, 3),  # epochs 0, 1, 2 (one step)
    ("epoch", {"max_epochs": 3, "limit_train_batches": 3, "accumulate_grad_batches": 2}, 3),
]


@pytest.mark.parametrize("name", list(_END_SPECS))
@pytest.mark.parametrize(("interval", "options", "length"), _RUNS)
def test_every_step_matches_the_hand_computed_schedule_and_the_last_uses_end_exactly(
        tmp_path, name, interval, options, length):
    recorder = StepRecorder()
    trainer = _trainer(tmp_path, [AlphaScheduler(_END_SPECS[name], interval=interval), recorder], **options)
    trainer.fit(TinyNet())
    used = recorder.used if interval == "step" else recorder.epochs
    assert sorted(used) == list(range(length))
    assert [used[t] for t in range(length)] == pytest.approx([_by_hand(name, t, length) for t in range(length)],
                                                             rel=1e-12)
    assert used[length - 1] == 0.02  # exactly end, not 0.0104 or 0.026
    ckpt = tmp_path / "done.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=True)["state_dict"]
    assert [float(saved[k]) for k in saved if k.endswith("alpha")] == [0.02, 0.02]  # what export records


def test_the_manifest_records_the_alpha_the_last_step_used(tmp_path):
    from helu_lightning.export.manifest import _alphas

    module = TinyNet()
    _trainer(tmp_path, [AlphaScheduler({"name": "linear", "start": 0.1, "end": 0.02})], max_steps=10).fit(module)
    assert _alphas(module) == 0.02


def test_a_run_resumed_mid_schedule_ends_exactly_at_end(tmp_path):
    spec = _END_SPECS["cosine"]
    first = Recorder(stop_at=3)  # at the end of epoch 0 (a stop mid-epoch makes Lightning resume at the next one)
    trainer = _trainer(tmp_path, [AlphaScheduler(spec), first], max_epochs=3, limit_train_batches=3)
    trainer.fit(TinyNet())
    ckpt = tmp_path / "stopped.ckpt"
    trainer.save_checkpoint(ckpt)
    second = StepRecorder()
    _trainer(tmp_path, [AlphaScheduler(spec), second], max_epochs=3, limit_train_batches=3).fit(
        TinyNet(), ckpt_path=ckpt)
    assert sorted(second.used) == [3, 4, 5, 6, 7, 8]
    assert [second.used[t] for t in range(3, 9)] == pytest.approx([_by_hand("cosine", t, 9) for t in range(3, 9)])
    assert second.used[8] == 0.02


def test_a_warmup_as_long_as_the_run_is_refused(tmp_path):
    spec = {"name": "warmup", "start": 0.01, "peak": 0.1, "end": 0.02, "warmup": 6}
    with pytest.raises(UserError, match="warmup=6 steps leaves no decay in a run of 6 steps.*at most 5"):
        _trainer(tmp_path, [AlphaScheduler(spec)], max_steps=6).fit(TinyNet())


def test_an_exponential_that_stops_short_of_end_warns_with_the_gamma_that_ends_there(tmp_path):
    spec = {"name": "exponential", "start": 0.1, "gamma": 0.9, "end": 0.01}
    with pytest.warns(UserWarning, match=r"reaches 0\.05314 at the last step \(6\), not end=0\.01.*gamma=0\.681292"):
        _trainer(tmp_path, [AlphaScheduler(spec)], max_steps=7).fit(TinyNet())


def test_an_explicit_total_longer_than_the_run_warns_where_alpha_stops(tmp_path):
    spec = {"name": "linear", "start": 0.1, "end": 0.02, "total": 11}
    with pytest.warns(UserWarning, match=r"total=11 steps is longer than the run's 6, so alpha stops at 0\.06, short"):
        _trainer(tmp_path, [AlphaScheduler(spec)], max_steps=6).fit(TinyNet())


def test_a_run_resumed_from_a_mid_epoch_checkpoint_ends_exactly_at_end(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    spec = _END_SPECS["cosine"]
    every_4 = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=4, save_top_k=-1)
    _trainer(tmp_path, [AlphaScheduler(spec), every_4], max_epochs=3, limit_train_batches=3,
             enable_checkpointing=True).fit(TinyNet())
    resumed = StepRecorder()
    _trainer(tmp_path, [AlphaScheduler(spec), resumed], max_epochs=3, limit_train_batches=3).fit(
        TinyNet(), ckpt_path=tmp_path / "ckpt" / "epoch=1-step=4.ckpt")  # saved after step 3, mid epoch 1
    assert sorted(resumed.used) == [4, 5, 6, 7, 8]
    assert [resumed.used[t] for t in range(4, 9)] == pytest.approx([_by_hand("cosine", t, 9) for t in range(4, 9)])
    assert resumed.used[8] == 0.02
