"""Data: an IDX reader, MNIST with checksums and download, sklearn's offline digits and MNIST-1D (generated)."""

from ._digits import load_digits
from ._download import MNIST_MIRRORS, download_mnist
from ._errors import DataError
from ._idx import parse_idx, read_idx
from ._mnist import MNIST_FILES, ArraySplits, load_mnist, mnist_dir, verify_file
from ._mnist1d import load_mnist1d
from ._paths import ENV_DATA_DIR, default_cache_dir, resolve_data_dir
from ._registry import DATASETS, load_dataset

__all__ = [
    "ArraySplits",
    "DATASETS",
    "DataError",
    "ENV_DATA_DIR",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "default_cache_dir",
    "download_mnist",
    "load_dataset",
    "load_digits",
    "load_mnist",
    "load_mnist1d",
    "mnist_dir",
    "parse_idx",
    "read_idx",
    "resolve_data_dir",
    "verify_file",
]
