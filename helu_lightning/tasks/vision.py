"""``VisionClassifier``: image classification with any backbone from :func:`helu_lightning.models.build_backbone`,
its activations built from one activation spec (``activation: {name: helu, alpha: 0.001}``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from ..activations import ActivationFactory, ActivationSpec, activation_factory
from ..batches import class_probabilities, split_batch
from ..checkpoints import TrustedLoading
from ..models import build_backbone
from ..models.registry import IMAGE_SIZED

__all__ = ["VisionClassifier"]

_PLAIN = (str, int, float, bool, type(None))


def _is_plain(value: Any) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


class VisionClassifier(TrustedLoading, LightningModule):
    """Cross-entropy classifier over ``build_backbone(backbone, num_classes, activation, in_channels, **options)``.

    The optimizer and LR scheduler are LightningCLI dependency injections (``optimizer: {class_path: torch.optim.SGD,
    init_args: {lr: 0.01, momentum: 0.9}}``); left unset, the optimizer is the paper's SGD (lr 0.01, momentum 0.9,
    weight decay 5e-4) and the learning rate stays constant. Logs ``{train,val,test}/{loss,acc}`` and, with five
    or more classes, ``{val,test}/acc_top5``.
    """

    def __init__(
        self,
        backbone: str = "small_cnn",
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        backbone_options: dict[str, Any] | None = None,
        activation: dict[str, Any] | str | ActivationSpec = "helu",  # dict first: dotted overrides merge into it
        label_smoothing: float = 0.0,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), e.g. 0.1; got {label_smoothing}")
        if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
            raise ValueError(f"image_size must be the input's side in pixels (e.g. 32 for CIFAR), got {image_size!r}")
        if callable(activation) and not isinstance(activation, ActivationFactory):
            raise TypeError(
                f"activation must be a name, a mapping or an ActivationSpec so checkpoints can rebuild it, got "
                f"{activation!r}; register a custom class with helu_lightning.register_activation(name, cls)"
            )
        factory = activation_factory(dict(activation) if isinstance(activation, Mapping) else activation)
        options = dict(backbone_options or {})
        if backbone in IMAGE_SIZED:  # their layers are sized for the image
            options.setdefault("image_size", image_size)
        self.model = build_backbone(backbone, num_classes, factory, in_channels=in_channels, **options)
        self.save_hyperparameters()
        # Checkpoints stay loadable with weights_only=True: hparams hold plain values only. Under LightningCLI they
        # are the parsed config (optimizer as class_path/init_args); a callable passed in code is not saved.
        self.hparams["activation"] = factory.to_dict()
        for key in ("optimizer", "lr_scheduler"):
            if not _is_plain(self.hparams.get(key)):
                self.hparams[key] = None
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.image_size = image_size
        self.label_smoothing = label_smoothing
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        has_top5 = num_classes >= 5
        self.val_acc_top5 = MulticlassAccuracy(num_classes, top_k=5, average="micro") if has_top5 else None
        self.test_acc_top5 = MulticlassAccuracy(num_classes, top_k=5, average="micro") if has_top5 else None

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def example_input(self, batch_size: int = 2) -> Tensor:
        """A random image batch shaped like the training data, for export and benchmarks."""
        return torch.randn(batch_size, self.in_channels, self.image_size, self.image_size, device=self.device)

    def setup(self, stage: str) -> None:
        """Fail early, naming the fix, when the DataModule's classes, channels or image size differ from the model's."""
        datamodule = getattr(self._trainer, "datamodule", None)
        for name in ("num_classes", "in_channels", "image_size"):
            found, mine = getattr(datamodule, name, None), getattr(self, name)
            if isinstance(found, int) and found != mine:
                raise ValueError(
                    f"the data has {name}={found} but the model was built with {name}={mine}; set "
                    f"model.init_args.{name}: {found} in the config (or --model.init_args.{name} {found})"
                )

    def _step(self, batch: Any, stage: str) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        self.log(
            f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True
        )
        acc = getattr(self, f"{stage}_acc")
        acc(logits, y)
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=stage != "train", batch_size=len(y))
        top5 = getattr(self, f"{stage}_acc_top5", None)
        if top5 is not None:
            top5(logits, y)
            self.log(f"{stage}/acc_top5", top5, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Class probabilities for ``batch`` (images, or an ``(images, labels)`` pair); NaN rows where a logit is
        not finite (the writers refuse them)."""
        return class_probabilities(self(split_batch(batch)[0]))

    def configure_optimizers(self) -> Any:
        if self.optimizer is None:
            optimizer = torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        else:
            optimizer = self.optimizer(self.parameters())
        if self.lr_scheduler is None:
            return optimizer
        scheduler = self.lr_scheduler(optimizer)
        config = {"scheduler": scheduler}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = "val/loss"
        return {"optimizer": optimizer, "lr_scheduler": config}
