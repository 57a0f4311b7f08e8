"""Download logic against a local HTTP server (loopback only) serving the shared files."""

import functools
import http.server
import shutil
import threading

import pytest

from layerwise.data import MNIST_FILES, DataError, download_mnist, load_mnist


@pytest.fixture()
def server(tmp_path, shared_data_dir):
    good = tmp_path / "good"
    shutil.copytree(shared_data_dir / "mnist", good)
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in good.iterdir():
        (bad / f.name).write_bytes(f.read_bytes()[:-100])  # truncated copies
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_verifies_and_loads(server, tmp_path):
    target = tmp_path / "data" / "mnist"
    written = download_mnist(target, mirrors=[f"{server}/good/"])
    assert sorted(p.name for p in written) == sorted(f"{s.name}.gz" for s in MNIST_FILES.values())
    assert load_mnist(tmp_path / "data").train_x.shape == (60000, 784)
    assert download_mnist(target, mirrors=[f"{server}/good/"]) == []  # complete: nothing fetched again


def test_bad_mirror_falls_back_to_next(server, tmp_path):
    target = tmp_path / "d" / "mnist"
    download_mnist(target, mirrors=[f"{server}/bad/", f"{server}/missing/", f"{server}/good/"])
    assert load_mnist(tmp_path / "d").test_y.shape == (10000,)


def test_only_bad_mirrors_leave_nothing_that_looks_complete(server, tmp_path):
    target = tmp_path / "d" / "mnist"
    with pytest.raises(DataError, match="could not download 'train-images-idx3-ubyte.gz'.*bad/"):
        download_mnist(target, mirrors=[f"{server}/bad/"], timeout=10)
    assert list(target.iterdir()) == []  # no partial file, no temporary left behind


def test_corrupted_existing_file_is_replaced(server, tmp_path):
    target = tmp_path / "d" / "mnist"
    download_mnist(target, mirrors=[f"{server}/good/"])
    victim = target / "t10k-labels-idx1-ubyte.gz"
    victim.write_bytes(b"garbage")
    assert download_mnist(target, mirrors=[f"{server}/good/"]) == [victim]
    load_mnist(tmp_path / "d")
