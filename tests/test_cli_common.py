"""Every `layerwise bench` subcommand takes the same six flags; each is honoured, or rejected with the reason."""

from __future__ import annotations

import pytest

from layerwise_bench.cli import build_parser
from layerwise_bench.cli._common import COMMON_FLAGS, check_common_flags

SUBCOMMANDS = [
    "autoencoder",
    "tune",
    "equal-time",
    "steptime",
    "telemetry",
    "aux",
    "depth",
    "similarity",
    "layer-parallel",
    "zstore",
]
VALUES = {
    "out": ["--out", "o"],
    "device": ["--device", "cpu"],
    "threads": ["--threads", "1"],
    "seed": ["--seed", "3"],
    "resume": ["--resume"],
    "overwrite": ["--overwrite"],
    "progress": ["--no-progress"],
}


def _parse(name: str, *extra: str):  # type: ignore[no-untyped-def]
    out = ["--out-file", "t.json"] if name == "tune" else ["--out", "o"]
    return build_parser().parse_args(["bench", name, *out, *extra])


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_parses_every_common_flag(name: str) -> None:
    tune = ["--out-file", "t.json"] if name == "tune" else []
    usage = build_parser().parse_args(["bench", name, "--out", "o", *tune])._parser.format_usage()
    for flag in COMMON_FLAGS:
        assert f"--{flag}" in usage, (name, flag)


@pytest.mark.parametrize("name", SUBCOMMANDS)
@pytest.mark.parametrize("flag", COMMON_FLAGS)
def test_a_common_flag_is_honoured_or_rejected_by_name(name: str, flag: str, capsys: pytest.CaptureFixture) -> None:
    out = ["--out-file", "t.json"] if name == "tune" else [] if flag == "out" else ["--out", "o"]
    args = build_parser().parse_args(["bench", name, *out, *VALUES[flag]])
    if flag in args._unsupported:
        with pytest.raises(SystemExit) as exc:
            check_common_flags(args, name)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert f"`layerwise bench {name}` does not take --{flag}: {args._unsupported[flag]}" in err
    else:
        check_common_flags(args, name)
        expected = {"device": "cpu", "threads": 1, "seed": 3, "resume": True, "overwrite": True, "progress": False}
        if flag in expected:
            assert getattr(args, flag) == expected[flag]
        assert args.no_progress is (not args.progress)


def test_defaults_are_filled_when_no_flag_is_given() -> None:
    args = _parse("depth")
    check_common_flags(args, "depth")
    assert (args.device, args.threads, args.resume, args.progress) == ("cpu", None, False, True)
    assert args.seed == args._seed_default


@pytest.mark.parametrize(
    "name,extra",
    [
        ("steptime", ["--steps", "1", "--repeats", "1", "--no-pypi"]),
        ("telemetry", ["--k", "2", "--steps", "2", "--every", "1", "--repeats", "1"]),
        ("zstore", ["--dataset", "digits", "--depth", "2", "--width", "4", "--steps", "1"]),
        ("layer-parallel", ["--dataset", "digits", "--depth", "2", "--width", "4", "--repeats", "1"]),
        ("similarity", ["--dataset", "digits", "--depth", "1", "--epochs", "1"]),
    ],
)
def test_no_subcommand_clobbers_a_record_without_overwrite(name: str, extra: list[str], tmp_path, capsys) -> None:
    from layerwise_bench.cli import main

    out = tmp_path / "o"
    out.mkdir()
    (out / "results.json").write_text('{"kept": true}')
    assert main(["bench", name, "--out", str(out), *extra]) == 1
    assert "already holds a run (results.json). Pass --resume to continue it, --overwrite" in capsys.readouterr().err
    assert (out / "results.json").read_text() == '{"kept": true}'
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]
