"""DataModules reading the real on-disk formats (CIFAR pickles, ImageFolder, IDX, GLUE TSV) and offline sets."""

from helu_lightning.data.base import ImageDataModule
from helu_lightning.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from helu_lightning.data.digits import DigitsDataModule
from helu_lightning.data.fashion_mnist import FashionMNISTDataModule
from helu_lightning.data.imagenette import ImagenetteDataModule

__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "ImagenetteDataModule",
]

from helu_lightning.data.glue import GlueDataModule  # noqa: E402
from helu_lightning.data.text import TextClassificationDataModule  # noqa: E402

__all__ += ["GlueDataModule", "TextClassificationDataModule"]
