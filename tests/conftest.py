"""Shared test set-up: offline Hugging Face, deterministic seeds, a small thread budget (CI has 2 cores and runs
one pytest-xdist worker per core, each at one thread), and Triton in interpreter mode where there is no GPU."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: N test processes share the cores, one thread each
    torch.set_num_threads(1)  # (more threads per process on a shared 2-core machine slow tiny convolutions down)
if not torch.cuda.is_available():  # HeLU's Triton kernels run in Triton's interpreter on CPU tensors; the variable
    os.environ.setdefault("TRITON_INTERPRET", "1")  # is read when a kernel is defined, i.e. on first use


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """One intra-op thread: on a shared 2-core machine, more threads make tiny convolutions many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
