"""timm backbones: `timm:<name>` with HeLU through timm's act_layer and surgery, HeLU in timm's own registry, and
the whole path (helu-train fit -> helu-train export -> every file loaded with timm alone, no helu_lightning)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fixtures import write_cifar10
from torch import nn

from helu_lightning import HeLU, activation_factory, register_timm_activations
from helu_lightning.commands import main
from helu_lightning.errors import UserError
from helu_lightning.models import build_backbone
from helu_lightning.models.timm_models import activation_counts

timm = pytest.importorskip("timm")
pytestmark = pytest.mark.usefixtures("one_thread")

# Blocks helu_lightning in a fresh interpreter, so what loads there loads without our code.
BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "helu_lightning":
            raise ImportError("helu_lightning is blocked in this interpreter")
sys.meta_path.insert(0, Block())
"""

REGISTRY_CHECK = """
import functools, inspect, json, sys
import helu_lightning
lazy = "timm" not in sys.modules
import timm, torch
from helu_lightning import HeLU
assert "def get_act_layer" in inspect.getsource(timm.layers.create_act)  # the hook keeps the module's source
model = timm.create_model("test_resnet", pretrained=False, act_layer="helu", num_classes=3)
tuned = timm.create_model("test_resnet", pretrained=False, act_layer=functools.partial(HeLU, alpha=0.01))
alphas = sorted({round(m.alpha.item(), 6) for m in tuned.modules() if isinstance(m, HeLU)})
print(json.dumps({"lazy": lazy, "helu": sum(isinstance(m, HeLU) for m in model.modules()),
                  "relu": sum(type(m) is torch.nn.ReLU for m in model.modules()), "alphas": alphas}))
"""


def _fresh_python(script: str, *args: str, cwd: Path | None = None) -> dict:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_helu_joins_timms_registry_on_import_without_importing_timm() -> None:
    result = _fresh_python(REGISTRY_CHECK)
    # test_resnet has 12 ReLU layers (stem, 2 per block and after each residual sum); all are HeLU, none ReLU.
    assert result == {"lazy": True, "helu": 12, "relu": 0, "alphas": [0.01]}


def test_register_timm_activations_is_public_and_idempotent() -> None:
    from timm.layers import create_act

    register_timm_activations()
    register_timm_activations()
    assert create_act.get_act_layer("helu") is HeLU
    assert create_act._ACT_LAYER_DEFAULT["gelu"] is not HeLU  # timm's own names are left alone


def _names_of(model: nn.Module, types: tuple[type, ...]) -> set[str]:
    return {n for n, m in model.named_modules() if n and isinstance(m, types)}


# model -> (activation types timm builds by default that must become HeLU, types that must stay)
POLICY = {
    "resnet10t": ((nn.ReLU,), ()),
    "convnext_atto": ((timm.layers.GELU,), ()),
    "test_vit": ((nn.GELU,), ()),
    "test_efficientnet": ((nn.SiLU,), (nn.Sigmoid,)),
    "mobilenetv2_050": ((nn.ReLU6,), ()),
    "mobilenetv3_small_050": ((nn.Hardswish, nn.ReLU), (nn.Hardsigmoid,)),
}


@pytest.mark.parametrize("name", sorted(POLICY))
def test_main_activation_and_leftover_relu_gelu_become_helu_gates_stay(name: str) -> None:
    made_helu, kept = POLICY[name]
    reference = timm.create_model(name, pretrained=False, num_classes=5, in_chans=1)
    model = build_backbone(f"timm:{name}", 5, activation_factory({"name": "helu", "alpha": 0.02}), in_channels=1)
    # HeLU sits exactly where timm's default model has its main activation (and ReLU/GELU), nowhere else.
    assert _names_of(model, (HeLU,)) == _names_of(reference, made_helu) != set()
    assert {round(m.alpha.item(), 6) for m in model.modules() if isinstance(m, HeLU)} == {0.02}
    for kind in kept:
        assert _names_of(model, (kind,)) == _names_of(reference, (kind,)) != set()
    # Same parameters and buffers apart from HeLU's alpha: the weights load into timm's own model.
    own = {k for k in model.state_dict() if not k.endswith(".alpha")}
    assert own == set(reference.state_dict())
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 5)


def test_activation_counts_report_what_is_left() -> None:
    model = build_backbone("timm:test_efficientnet", 3, activation_factory("helu"))
    assert activation_counts(model) == {"HeLU": 11, "Sigmoid": 2}


def test_surgery_only_mode_takes_replace_types() -> None:
    model = build_backbone("timm:test_efficientnet", 3, activation_factory("helu"), use_act_layer=False,
                           replace=["SiLU"])
    assert activation_counts(model) == {"HeLU": 11, "Sigmoid": 2}
    with pytest.raises(UserError, match=r"replace: \[SiLU\]"):
        build_backbone("timm:test_efficientnet", 3, activation_factory("helu"), use_act_layer=False)


@pytest.mark.parametrize(("options", "message"), [
    ({"act_layer": "silu"}, "drop act_layer"),
    ({"in_chans": 1}, "in_chans is set by the task"),
    ({"checkpoint_path": "/tmp/evil.pth"}, "checkpoint_path would make timm load weights"),
    ({"pretrained": True}, "pretrained would make timm load weights"),
    ({"pretrained_cfg_overlay": {"file": "/tmp/evil.pth"}}, "pretrained_cfg_overlay would make timm load"),
    ({"replace": ["Swishy"]}, "'Swishy' is not one"),
])
def test_bad_options_get_clear_errors(options: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        build_backbone("timm:test_resnet", 3, activation_factory("helu"), **options)


def test_unknown_timm_model_suggests_close_names() -> None:
    with pytest.raises(UserError, match="unknown timm model 'resnet26dd'.*'resnet26d'"):
        build_backbone("timm:resnet26dd", 3, activation_factory("helu"))


def test_backbone_options_reach_create_model() -> None:
    model = build_backbone("timm:test_vit", 3, activation_factory("helu"), img_size=32, drop_rate=0.25)
    assert model.patch_embed.img_size == (32, 32) and model.head_drop.p == 0.25


# Runs with timm, torch, safetensors and onnxruntime only; helu_lightning cannot be imported.
TIMM_CHECK = BLOCK + """
import json, runpy
import onnxruntime as ort, timm, torch
from safetensors.torch import load_file
out, batch = sys.argv[1], torch.load(sys.argv[2])
torch.set_num_threads(int(sys.argv[3]))  # the test's thread count: CPU kernels split sums by thread (bitwise)
recipe = json.load(open(f"{out}/manifest.json"))["verification"]["loader"]["timm"]
model = timm.create_model(recipe["name"], pretrained=False, **recipe["kwargs"]).eval()
model.load_state_dict(load_file(f"{out}/model.safetensors"), strict=True)
loaded = runpy.run_path(f"{out}/model.py")["load"]()
program = torch.export.load(f"{out}/model.pt2").module()
session = ort.InferenceSession(f"{out}/model.onnx")
with torch.no_grad():
    result = {"timm": model(batch).tolist(), "model.py": loaded(batch).tolist(), "pt2": program(batch).tolist(),
              "onnx": session.run(None, {"input": batch.numpy()})[0].tolist(), "relu_layers": recipe["relu_layers"],
              "helu_imported": any(m.startswith("helu_lightning") for m in sys.modules)}
print(json.dumps(result))
"""

# model -> timm kwargs the export must record beyond num_classes / in_chans (act_layer="relu" where timm's default
# activation is not ReLU). 1-channel inputs are covered with safetensors in test_standalone.py.
END_TO_END = {"resnet10t": {}, "convnext_atto": {"act_layer": "relu"}, "mobilenetv3_small_050": {"act_layer": "relu"}}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(END_TO_END))
def test_fit_export_and_load_with_timm_alone(name: str, tmp_path: Path) -> None:
    from helu_lightning.tasks.vision import VisionClassifier

    write_cifar10(tmp_path / "data", n_per_split=20)
    main(["fit", "--model", "helu_lightning.tasks.vision.VisionClassifier", "--model.backbone", f"timm:{name}",
          "--model.activation", '{"name": "helu", "alpha": 0.05}',
          "--data", "helu_lightning.data.cifar.CIFAR10DataModule",
          "--data.data_dir", str(tmp_path / "data"), "--data.val_fraction", "0.5",
          "--data.batch_size", "4", "--data.num_workers", "0", "--trainer.max_epochs", "1",
          "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--trainer.accelerator", "cpu",
          "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false",
          "--trainer.logger", "false"])
    (ckpt,) = (tmp_path / "run").rglob("*.ckpt")
    task = VisionClassifier.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).eval()
    helus = sum(isinstance(m, HeLU) for m in task.model.modules())
    assert helus > 0

    out = tmp_path / "exported"
    main(["export", "--ckpt_path", str(ckpt), "--output_dir", str(out)])
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"].values()) == {"model.safetensors", "model.py", "model.pt2", "model.onnx"}
    assert len(manifest["activation"]["layers"]) == helus
    recipe = manifest["verification"]["loader"]["timm"]
    assert recipe["kwargs"] == {"num_classes": 10, "in_chans": 3, **END_TO_END[name]}

    batch = torch.randn(3, 3, 32, 32)
    torch.save(batch, tmp_path / "batch.pt")
    loaded = _fresh_python(TIMM_CHECK, str(out), str(tmp_path / "batch.pt"), str(torch.get_num_threads()))
    with torch.no_grad():
        expected = task(batch)
    assert not loaded["helu_imported"] and loaded["relu_layers"] == []
    torch.testing.assert_close(torch.tensor(loaded["timm"]), expected, rtol=0, atol=0)
    torch.testing.assert_close(torch.tensor(loaded["model.py"]), expected, rtol=0, atol=0)
    for key in ("pt2", "onnx"):
        torch.testing.assert_close(torch.tensor(loaded[key]), expected, rtol=1e-3, atol=1e-4, msg=key)


def test_imagenette_timm_config_fast_dev_run_on_an_imagefolder_fixture(tmp_path: Path) -> None:
    from fixtures import write_imagenette

    from helu_lightning.cli import cli

    config = Path(__file__).resolve().parents[1] / "configs" / "imagenette_timm.yaml"
    classes = [f"n0{i:07d}" for i in range(10)]
    write_imagenette(tmp_path / "imagenette", classes=classes, n_per_class=2)
    run = cli(["fit", "--config", str(config), "--trainer.fast_dev_run", "true",
               "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false",
               "--data.init_args.data_dir", str(tmp_path / "imagenette"), "--data.init_args.image_size", "32",
               "--model.init_args.image_size", "32", "--data.init_args.batch_size", "2",
               "--data.init_args.num_workers", "0"])
    backbone = run.model.model
    assert type(backbone).__name__ == "ResNet" and backbone.fc.out_features == 10
    assert activation_counts(backbone) == {"HeLU": 27}
    assert {round(m.alpha.item(), 6) for m in backbone.modules() if isinstance(m, HeLU)} == {0.001}
    # One training step, then (test_after_fit: true) a test pass over the val/ folder.
    assert run.trainer.global_step == 1 and "test/acc" in run.trainer.callback_metrics


@pytest.mark.parametrize(("activation", "kind"), [("silu", nn.SiLU), ("relu", nn.ReLU), ("gelu", nn.GELU)])
def test_baseline_activations_take_the_same_places(activation: str, kind: type) -> None:
    reference = timm.create_model("test_efficientnet", pretrained=False, num_classes=3)
    model = build_backbone("timm:test_efficientnet", 3, activation_factory(activation))
    assert _names_of(model, (kind,)) == _names_of(reference, (nn.SiLU,))
    assert _names_of(model, (nn.Sigmoid,)) == _names_of(reference, (nn.Sigmoid,))
