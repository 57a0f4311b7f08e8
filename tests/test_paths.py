from pathlib import Path

from layerwise.data import ENV_DATA_DIR, mnist_dir, resolve_data_dir


def test_flag_beats_env_beats_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir() == tmp_path / "xdg" / "layerwise"
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "flag") == tmp_path / "flag"
    assert mnist_dir(tmp_path / "flag") == tmp_path / "flag" / "mnist"


def test_home_cache_without_xdg(monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert resolve_data_dir() == Path.home() / ".cache" / "layerwise"
