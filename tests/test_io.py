"""What the benchmark application writes reads back as written, or is an error naming the file."""

import json

import pytest
import torch

from layerwise_bench.core._io import CorruptFile, atomic_torch_save, atomic_write_json, load_checkpoint, read_json


def test_a_checkpoint_round_trips_and_any_damage_is_named(tmp_path):
    path = tmp_path / "c.pt"
    state = {"w": torch.arange(1000.0), "step": 3}
    atomic_torch_save(state, path)
    back = load_checkpoint(path)
    assert torch.equal(back["w"], state["w"]) and back["step"] == 3
    good = path.read_bytes()
    for where in (len(good) // 2, len(good) - 5):  # a flipped bit in the weights, near the end
        flipped = bytearray(good)
        flipped[where] ^= 0x10
        path.write_bytes(bytes(flipped))
        with pytest.raises(CorruptFile, match=r"c\.pt' does not match its SHA-256 digest.*Delete it"):
            load_checkpoint(path)
    path.write_bytes(good[: len(good) // 3])  # truncated
    with pytest.raises(CorruptFile, match="digest|truncated"):
        load_checkpoint(path)
    torch.save(state, path)  # a plain torch file: not ours
    with pytest.raises(CorruptFile, match="not a layerwise checkpoint"):
        load_checkpoint(path)


def test_a_damaged_json_file_is_named_with_the_fix(tmp_path):
    path = tmp_path / "results.json"
    atomic_write_json({"a": [1, 2, 3]}, path)
    assert read_json(path) == {"a": [1, 2, 3]}
    path.write_text(path.read_text()[:7])
    with pytest.raises(CorruptFile, match=r"results\.json' is not valid JSON.*--overwrite"):
        read_json(path)


def test_resume_from_a_damaged_checkpoint_stops_and_keeps_it(tmp_path):
    from layerwise_bench import AutoencoderConfig, get_method, load_autoencoder_data, train_method

    cfg = AutoencoderConfig(dataset="digits", epochs=2, subset=200, batch_size=100)
    data = load_autoencoder_data(cfg)
    ckpt = tmp_path / "adam.pt"

    def stop(record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_method(get_method("adam"), 1e-3, data, cfg, checkpoint=ckpt, progress=False, on_epoch=stop)
    damaged = bytearray(ckpt.read_bytes())
    damaged[-100] ^= 0x01
    ckpt.write_bytes(bytes(damaged))
    with pytest.raises(CorruptFile, match="adam.pt"):
        train_method(get_method("adam"), 1e-3, data, cfg, checkpoint=ckpt, resume=True, progress=False)
    assert ckpt.read_bytes() == bytes(damaged)  # kept as it was, for the user to inspect


def test_the_cli_names_a_damaged_results_file(tmp_path, capsys):
    from layerwise_bench.cli import main

    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text('{"benchmark": "autoenc')
    args = ["bench", "autoencoder", "--methods", "adam", "--subset", "100", "--epochs", "1", "--no-progress"]
    assert main([*args, "--out", str(out), "--resume"]) == 1
    err = capsys.readouterr().err
    assert "results.json' is not valid JSON" in err and "--overwrite" in err
    assert (out / "results.json").read_text() == '{"benchmark": "autoenc'
    json.dumps(err)  # one line of text, no traceback object


def test_a_full_disk_mid_run_names_the_file_and_keeps_the_previous_version(tmp_path, monkeypatch, capsys):
    import errno
    import os

    from layerwise_bench.cli import main

    out = tmp_path / "run"
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 4:  # a few files in: an epoch's results or checkpoint
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    args = ["bench", "autoencoder", "--methods", "adam", "--subset", "100", "--epochs", "3", "--no-progress"]
    assert main([*args, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "previous version" in err and str(out) in err
    assert "Traceback" not in err
    assert json.loads((out / "results.json").read_text())["benchmark"] == "autoencoder"  # still whole
    assert not list(out.rglob(".*.tmp"))  # no half-written temporaries left behind
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert main([*args, "--out", str(out), "--resume"]) == 0  # space freed: the run continues
