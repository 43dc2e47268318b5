"""No-code loading: `helu-train export` writes a model.py beside model.safetensors, and every built-in backbone at
1 and 3 channels loads from it in a fresh `python -I` interpreter where helu_lightning cannot be imported, giving
the trained model's outputs."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader, TensorDataset

from helu_lightning.commands import main
from helu_lightning.models.standalone import loader_source
from helu_lightning.tasks.vision import VisionClassifier

pytestmark = pytest.mark.usefixtures("one_thread")

# backbone -> (backbone_options, image size, layers that must become nn.ReLU in the library model)
BACKBONES = {
    "small_cnn": ({"width": 4}, 8, 0),
    "resnet18_cifar": ({"width": 4}, 8, 0),
    "wide_resnet": ({"depth": 10, "width": 1}, 8, 0),
    "plain_mlp": ({"depth": 3, "width": 8, "norm": "batch"}, 8, 0),
    "plain_cnn": ({"depth": 3, "width": 4, "norm": "none"}, 8, 0),
    # Hardswish made HeLU: torchvision builds Hardswish there, so model.py names those layers for nn.ReLU.
    # (memory="input": its classifier's Dropout(inplace=True) overwrites the output HeLU saves by default.)
    "torchvision:mobilenet_v3_small": ({"replace": ["ReLU", "Hardswish"]}, 32, 19),
    "timm:test_convnext": ({}, 32, 0),  # through act_layer: rebuilt with act_layer="relu"
    "timm:test_efficientnet": ({"use_act_layer": False, "replace": ["SiLU"]}, 32, 11),
}
CASES = [(name, channels) for name in BACKBONES for channels in (1, 3)]

# The documented one-liner, run in each export folder by an isolated interpreter that cannot import helu_lightning.
LOAD_CHECK = """
import json, os, runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "helu_lightning":
            raise ImportError("helu_lightning is blocked in this interpreter")
sys.meta_path.insert(0, Block())
import torch
torch.set_num_threads(1)
results = {}
for folder in sys.argv[1:]:
    os.chdir(folder)
    model = runpy.run_path("model.py")["load"]()
    with torch.no_grad():
        results[folder] = model(torch.load("batch.pt")).tolist()
results["helu_imported"] = any(m.startswith("helu_lightning") for m in sys.modules)
print(json.dumps(results))
"""


def _trained_checkpoint(backbone: str, channels: int, root: Path) -> tuple[Path, VisionClassifier]:
    options, size, _ = BACKBONES[backbone]
    task = VisionClassifier(backbone=backbone, num_classes=3, in_channels=channels, image_size=size,
                            backbone_options=options, activation={"name": "helu", "alpha": 0.1,
                                                                  "memory": "input" if "mobilenet" in backbone
                                                                  else "output"})
    data = TensorDataset(torch.randn(8, channels, size, size), torch.arange(8) % 3)
    trainer = Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=root)
    trainer.fit(task, DataLoader(data, batch_size=4))
    path = root / "trained.ckpt"
    trainer.save_checkpoint(path)
    return path, task.eval()


def _constant(source: str, name: str, default: object = None) -> object:
    """The literal value of module-level ``name = ...`` in ``source``."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == name:
            return ast.literal_eval(node.value)
    return default


@pytest.mark.slow
def test_every_builtin_backbone_loads_from_model_py_without_helu_lightning(tmp_path: Path) -> None:
    folders, expected = [], {}
    for backbone, channels in CASES:
        root = tmp_path / f"{backbone.replace(':', '_')}_{channels}"
        ckpt, task = _trained_checkpoint(backbone, channels, root)
        out = root / "exported"
        main(["export", "--ckpt_path", str(ckpt), "--output_dir", str(out), "--format", "safetensors"])
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["files"] == {"safetensors": "model.safetensors", "loader": "model.py"}
        loader = manifest["verification"]["loader"]
        assert loader["backbone"] == backbone and loader["bitwise_equal"]
        assert len(_constant((out / "model.py").read_text(), "RELU_LAYERS", [])) == BACKBONES[backbone][2], backbone
        size = BACKBONES[backbone][1]
        batch = torch.randn(3, channels, size, size)
        torch.save(batch, out / "batch.pt")
        with torch.no_grad():
            expected[str(out)] = task(batch)
        folders.append(str(out))

    done = subprocess.run([sys.executable, "-I", "-c", LOAD_CHECK, *folders], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded.pop("helu_imported") is False
    for folder, reference in expected.items():
        torch.testing.assert_close(torch.tensor(loaded[folder]), reference, rtol=1e-5, atol=1e-6, msg=folder)


def test_checkpoint_values_enter_model_py_only_as_literals() -> None:
    nasty = '"); import os; os.system("echo owned'
    hparams = {"backbone": "small_cnn", "num_classes": 3, "in_channels": 1, "image_size": 8,
               "backbone_options": {"width": 4, "note": nasty}}
    source, recipe = loader_source(hparams, [])
    assert _constant(source, "OPTIONS") == {"width": 4, "note": nasty, "image_size": 8}
    assert recipe == {"backbone": "small_cnn", "needs": "torch"}
    with pytest.raises(ValueError, match="not plain data"):
        loader_source({**hparams, "backbone_options": {"width": float("nan")}}, [])


def test_text_and_registered_backbones_get_no_model_py() -> None:
    assert loader_source({"task": "sst2", "model_config": {"model_type": "bert"}}, []) is None
    assert loader_source({"backbone": "my_own_net", "num_classes": 3}, []) is None
