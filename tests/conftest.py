"""Shared fixtures: MNIST from ../shared/data (tests and CI never touch the network)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    path = Path(os.environ.get("LAYERWISE_TEST_DATA_DIR", SHARED_DATA))
    if not (path / "mnist").is_dir():
        pytest.skip(f"MNIST not found at {path}/mnist (set LAYERWISE_TEST_DATA_DIR)")
    return path


@pytest.fixture(autouse=True)
def _no_user_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never read or write the user's data directory or cache."""
    monkeypatch.delenv("LAYERWISE_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """The CLI's --threads sets a process-wide torch setting; in-process CLI tests must not leak it."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
