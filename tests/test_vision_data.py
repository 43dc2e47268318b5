"""Vision DataModules on tiny fixtures written in the real formats (CIFAR pickles, ImageFolder, IDX)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from fixtures import write_cifar10, write_cifar100, write_fashion_mnist_idx, write_imagenette
from jsonargparse import ArgumentParser
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from PIL import Image

import helu_lightning.data.fashion_mnist as fashion_module
from helu_lightning.data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    DigitsDataModule,
    FashionMNISTDataModule,
    ImagenetteDataModule,
)
from helu_lightning.data.base import seeded_split
from helu_lightning.data.cifar import CIFAR10_MEAN, CIFAR10_STD
from helu_lightning.data.digits import DIGITS_MEAN, DIGITS_STD
from helu_lightning.data.fashion_mnist import FASHION_MNIST_MEAN, FASHION_MNIST_STD
from helu_lightning.data.imagenette import IMAGENET_MEAN, IMAGENET_STD


def _normalised(pixels_hwc: np.ndarray, mean, std) -> torch.Tensor:
    """Hand-computed reference: uint8 HWC -> CHW, /255, minus mean, over std (per channel)."""
    x = torch.from_numpy(pixels_hwc).permute(2, 0, 1).float() / 255
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10(root, n_per_split=50)
    write_cifar100(root, n_per_split=200)
    return root


def _cifar10(root, **kwargs) -> CIFAR10DataModule:
    dm = CIFAR10DataModule(str(root), num_workers=0, batch_size=8, **kwargs)
    dm.setup("fit")
    return dm


def test_seeded_split_is_disjoint_complete_and_reproducible():
    rest, val, test = seeded_split(100, [0.1, 0.25], seed=3)
    assert (len(rest), len(val), len(test)) == (65, 10, 25)
    assert sorted(torch.cat([rest, val, test]).tolist()) == list(range(100))
    assert torch.equal(seeded_split(100, [0.1, 0.25], seed=3)[1], val)
    assert not torch.equal(seeded_split(100, [0.1, 0.25], seed=4)[1], val)
    with pytest.raises(ValueError, match="leave nothing to train on"):
        seeded_split(10, [0.5, 0.5], seed=0)


def test_cifar10_shapes_labels_and_split_sizes(cifar_root):
    dm = _cifar10(cifar_root, val_fraction=0.2)
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (10, 3, 32)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (40, 10, 50)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (8, 3, 32, 32) and images.dtype == torch.float32 and labels.dtype == torch.int64
    all_labels = [dm.train_set[i][1] for i in range(40)] + [dm.val_set[i][1] for i in range(10)]
    assert sorted(all_labels) == sorted(i % 10 for i in range(50))
    assert [dm.test_set[i][1] for i in range(50)] == [i % 10 for i in range(50)]


def test_cifar_validation_split_follows_the_seed(cifar_root):
    first = _cifar10(cifar_root, seed=1, val_fraction=0.2).val_set.indices
    assert _cifar10(cifar_root, seed=1, val_fraction=0.2).val_set.indices == first
    assert _cifar10(cifar_root, seed=2, val_fraction=0.2).val_set.indices != first
    train = _cifar10(cifar_root, seed=1, val_fraction=0.2).train_set.indices
    assert not set(first) & set(train) and len(set(first) | set(train)) == 50


def test_cifar_eval_splits_are_normalised_and_only_train_is_augmented(cifar_root):
    with open(cifar_root / "cifar-10-batches-py" / "test_batch", "rb") as handle:
        raw_test = pickle.load(handle)["data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    dm = _cifar10(cifar_root, val_fraction=0.2)
    assert torch.allclose(dm.test_set[7][0], _normalised(raw_test[7], CIFAR10_MEAN, CIFAR10_STD), atol=1e-6)

    raw_train = dm.train_set.dataset.data
    val_index = dm.val_set.indices[0]
    expected_val = _normalised(raw_train[val_index], CIFAR10_MEAN, CIFAR10_STD)
    for seed in range(3):
        torch.manual_seed(seed)
        assert torch.allclose(dm.val_set[0][0], expected_val, atol=1e-6)

    train_index = dm.train_set.indices[0]
    plain = _normalised(raw_train[train_index], CIFAR10_MEAN, CIFAR10_STD)
    draws = []
    for seed in range(6):
        torch.manual_seed(seed)
        draws.append(dm.train_set[0][0])
    assert any(not torch.equal(d, draws[0]) for d in draws[1:])
    assert any(not torch.allclose(d, plain) for d in draws)
    no_augment = _cifar10(cifar_root, val_fraction=0.2, augment=False)
    assert torch.allclose(no_augment.train_set[0][0], plain, atol=1e-6)


def test_cifar100_reads_fine_labels_and_accepts_the_batch_folder_itself(cifar_root):
    dm = CIFAR100DataModule(str(cifar_root / "cifar-100-python"), num_workers=0, val_fraction=0.1)
    dm.setup()
    assert dm.num_classes == 100
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (180, 20, 200)
    assert [dm.test_set[i][1] for i in range(200)] == [i % 100 for i in range(200)]
    images, _ = next(iter(dm.test_dataloader()))
    assert images.shape == (128, 3, 32, 32)


def test_cifar_missing_directory_names_the_files_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        CIFAR10DataModule(str(tmp_path / "nowhere")).setup()
    message = str(error.value)
    assert "cifar-10-batches-py does not exist" in message
    assert "data_batch_1" in message and "batches.meta" in message
    assert "download: true" in message and "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message


def test_cifar_incomplete_directory_names_the_missing_file(tmp_path):
    write_cifar10(tmp_path, n_per_split=10)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks data_batch_3\. Expected"):
        CIFAR10DataModule(str(tmp_path), num_workers=0).setup()
    write_cifar100(tmp_path, n_per_split=10)
    (tmp_path / "cifar-100-python" / "meta").unlink()
    with pytest.raises(FileNotFoundError, match=r"cifar-100-python lacks meta\. .*cifar-100-python\.tar\.gz"):
        CIFAR100DataModule(str(tmp_path), num_workers=0).prepare_data()


def test_cifar_truncated_file_is_reported_as_corrupted(tmp_path):
    folder = write_cifar10(tmp_path, n_per_split=10)
    (folder / "data_batch_2").write_bytes((folder / "data_batch_2").read_bytes()[:100])
    with pytest.raises(RuntimeError, match="truncated or corrupted"):
        CIFAR10DataModule(str(tmp_path), num_workers=0).setup()


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"val_fraction": 1.0}, "val_fraction must lie in"),
        ({"val_fraction": -0.1}, "val_fraction must lie in"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"num_workers": -1}, "num_workers must be an integer >= 0"),
    ],
)
def test_bad_loader_settings_are_refused(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        CIFAR10DataModule("data", **kwargs)


def test_val_fraction_zero_trains_on_everything_and_skips_validation(cifar_root):
    dm = _cifar10(cifar_root, val_fraction=0.0)
    assert len(dm.train_set) == 50 and dm.val_set is None and dm.val_dataloader() == []


def test_persistent_workers_only_apply_with_worker_processes(cifar_root):
    dm = _cifar10(cifar_root, persistent_workers=True, pin_memory=True)
    loader = dm.train_dataloader()
    assert loader.persistent_workers is False and loader.pin_memory is True and loader.num_workers == 0


@pytest.fixture(scope="module")
def imagenette_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenette") / "imagenette2-160"
    return write_imagenette(root, classes=("n01", "n02", "n03"), n_per_class=5, size=(40, 30))


def test_imagenette_sizes_classes_and_eval_transform(imagenette_root):
    dm = ImagenetteDataModule(str(imagenette_root), image_size=24, val_fraction=0.2, num_workers=0, batch_size=4)
    assert dm.num_classes == 3
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (12, 3, 15)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 24, 24) and set(labels.tolist()) <= {0, 1, 2}
    assert sorted(dm.test_set[i][1] for i in range(15)) == [0] * 5 + [1] * 5 + [2] * 5

    # eval: short side 30 -> round(24 / 0.875) = 27 (40 x 30 -> 36 x 27), centre 24 x 24 crop, ImageNet stats
    path, _ = dm.test_set.dataset.samples[0]
    image = Image.open(path).convert("RGB").resize((36, 27), Image.BILINEAR)
    reference = _normalised(np.array(image)[2:26, 6:30], IMAGENET_MEAN, IMAGENET_STD)
    assert (dm.test_set[0][0] - reference).abs().mean() < 0.05
    torch.manual_seed(0)
    assert torch.equal(dm.test_set[0][0], dm.test_set[0][0])


def test_imagenette_missing_or_mismatched_folders(tmp_path, imagenette_root):
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError, match=r"lacks val/\. .*imagenette2-160\.tgz"):
        ImagenetteDataModule(str(tmp_path)).setup()
    odd = tmp_path / "odd"
    write_imagenette(odd, classes=("a", "b"), n_per_class=1)
    (odd / "val" / "b").rename(odd / "val" / "c")
    with pytest.raises(ValueError, match=r"only in train: \['b'\], only in val: \['c'\]"):
        ImagenetteDataModule(str(odd), num_workers=0).setup()
    with pytest.raises(ValueError, match="image_size must be an integer"):
        ImagenetteDataModule(str(imagenette_root), image_size=4)


@pytest.mark.parametrize("layout", ["torchvision_raw", "flat_gz"])
def test_fashion_mnist_reads_idx_files(tmp_path, layout):
    folder = tmp_path / "FashionMNIST" / "raw" if layout == "torchvision_raw" else tmp_path
    write_fashion_mnist_idx(folder, n=20, gzipped=layout == "flat_gz")
    dm = FashionMNISTDataModule(str(tmp_path), val_fraction=0.25, augment=False, batch_size=5)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (15, 5, 20)
    images, labels = next(iter(dm.test_dataloader()))
    assert images.shape == (5, 1, 28, 28) and labels.tolist() == [3, 4, 5, 6, 7]
    pixels = np.random.default_rng(1).integers(0, 256, size=(20, 28, 28), dtype=np.uint8)  # the fixture's test images
    expected = (torch.from_numpy(pixels[:5]).float()[:, None] / 255 - FASHION_MNIST_MEAN[0]) / FASHION_MNIST_STD[0]
    assert torch.allclose(images, expected, atol=1e-6)


def test_fashion_mnist_defaults_to_the_debian_package_folder(tmp_path, monkeypatch):
    write_fashion_mnist_idx(tmp_path, n=10, gzipped=True)
    monkeypatch.setattr(fashion_module, "DEBIAN_DIR", str(tmp_path))
    dm = FashionMNISTDataModule(val_fraction=0.2)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (8, 2, 10)
    torch.manual_seed(0)
    augmented = [dm.train_set[0][0] for _ in range(6)]
    assert any(not torch.equal(a, augmented[0]) for a in augmented[1:])


def test_fashion_mnist_missing_file_error_names_it_and_the_package(tmp_path):
    write_fashion_mnist_idx(tmp_path, n=4)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError) as error:
        FashionMNISTDataModule(str(tmp_path)).setup()
    message = str(error.value)
    assert message.startswith("Fashion-MNIST not found: no t10k-labels-idx1-ubyte (plain or .gz)")
    assert "apt-get install dataset-fashion-mnist" in message
    with pytest.raises(ValueError, match="download: true needs a writable data_dir"):
        FashionMNISTDataModule(download=True)


def _column(dataset, position: int) -> torch.Tensor:
    """Every example's image (0) or label (1) of ``dataset``, stacked."""
    return torch.stack([torch.as_tensor(dataset[i][position]) for i in range(len(dataset))])


def test_digits_split_sizes_determinism_and_normalisation():
    from sklearn.datasets import load_digits

    dm = DigitsDataModule(seed=5)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (1257, 270, 270)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (64, 1, 8, 8) and labels.dtype == torch.int64
    every = torch.cat([_column(dm.train_set, 0), _column(dm.val_set, 0), _column(dm.test_set, 0)])
    assert abs(every.mean().item()) < 1e-3 and abs(every.std().item() - 1) < 1e-3
    raw = torch.as_tensor(load_digits().images, dtype=torch.float32)
    order = torch.cat(seeded_split(1797, [0.15, 0.15], seed=5))
    assert torch.allclose((every * DIGITS_STD + DIGITS_MEAN) * 16, raw[order][:, None], atol=1e-4)
    again = DigitsDataModule(seed=5)
    again.setup()
    assert torch.equal(_column(again.test_set, 0), _column(dm.test_set, 0))
    other = DigitsDataModule(seed=6)
    other.setup()
    assert not torch.equal(_column(other.test_set, 1), _column(dm.test_set, 1))
    with pytest.raises(ValueError, match="test_fraction must be above 0"):
        DigitsDataModule(test_fraction=0)


def test_jsonargparse_builds_each_datamodule_from_a_class_path(cifar_root, imagenette_root):
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningDataModule, "data")
    cases = {
        "CIFAR100DataModule": {"data_dir": str(cifar_root), "val_fraction": 0.2, "num_workers": 0},
        "ImagenetteDataModule": {"data_dir": str(imagenette_root), "image_size": 32},
        "FashionMNISTDataModule": {"data_dir": str(cifar_root), "augment": False},
        "DigitsDataModule": {"batch_size": 32},
    }
    for name, init_args in cases.items():
        config = parser.parse_object({"data": {"class_path": f"helu_lightning.data.{name}", "init_args": init_args}})
        dm = parser.instantiate_classes(config).data
        assert type(dm).__name__ == name
        assert {k: dm.hparams[k] for k in init_args} == init_args
        assert all(isinstance(v, (str, int, float, bool, type(None))) for v in dm.hparams.values())


class _Linear(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3 * 32 * 32, 100)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self.layer(batch[0].flatten(1)), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_checkpoint_round_trips_the_datamodule_settings(cifar_root, tmp_path):
    dm = CIFAR100DataModule(str(cifar_root), val_fraction=0.0, seed=7, batch_size=50, num_workers=0, augment=False)
    trainer = Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(_Linear(), dm)
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)["datamodule_hyper_parameters"]
    assert saved["data_dir"] == str(cifar_root) and saved["seed"] == 7 and saved["augment"] is False
    restored = CIFAR100DataModule.load_from_checkpoint(tmp_path / "last.ckpt")
    assert dict(restored.hparams) == dict(dm.hparams)
    restored.setup()
    assert len(restored.train_set) == 200
