import hashlib
import shutil

import numpy as np
import pytest

from layerwise.data import MNIST_FILES, DataError, load_mnist, verify_file
from layerwise.data._mnist import MnistFile


def test_loads_shared_mnist(shared_data_dir):
    d = load_mnist(shared_data_dir)
    assert d.train_x.shape == (60000, 784) and d.test_x.shape == (10000, 784)
    assert d.train_x.dtype == np.float32 and 0.0 <= d.train_x.min() and d.train_x.max() == 1.0
    assert d.train_y.shape == (60000,) and set(np.unique(d.test_y)) == set(range(10))


def _copy(shared_data_dir, tmp_path):
    dst = tmp_path / "mnist"
    shutil.copytree(shared_data_dir / "mnist", dst)
    for f in dst.iterdir():
        f.chmod(0o644)
    return dst


def test_raw_uncompressed_files_accepted(shared_data_dir, tmp_path):
    import gzip

    dst = _copy(shared_data_dir, tmp_path)
    spec = MNIST_FILES["test_labels"]
    gz = dst / f"{spec.name}.gz"
    (dst / spec.name).write_bytes(gzip.decompress(gz.read_bytes()))
    gz.unlink()
    assert load_mnist(tmp_path).test_y.shape == (10000,)


def test_corrupted_content_fails_md5(shared_data_dir, tmp_path):
    import gzip

    dst = _copy(shared_data_dir, tmp_path)
    spec = MNIST_FILES["train_labels"]
    path = dst / f"{spec.name}.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[100] ^= 0xFF
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match=rf"train-labels-idx1-ubyte.gz' is corrupted: .*expected {spec.md5}"):
        load_mnist(tmp_path)


def test_truncated_download_fails(shared_data_dir, tmp_path):
    dst = _copy(shared_data_dir, tmp_path)
    path = dst / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz.*(truncated|damaged)"):
        load_mnist(tmp_path)


def test_wrong_shape_is_named(tmp_path):
    data = bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3])
    path = tmp_path / "f"
    path.write_bytes(data)
    spec = MnistFile("f", hashlib.md5(data).hexdigest(), (4,))
    with pytest.raises(DataError, match=r"has shape \(3,\), expected \(4,\)"):
        verify_file(path, spec)


def test_missing_dir_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="MNIST directory .* does not exist.*--download"):
        load_mnist(tmp_path / "nowhere")
    (tmp_path / "mnist").mkdir()
    with pytest.raises(DataError, match="'train-images-idx3-ubyte' .* is missing from"):
        load_mnist(tmp_path)
