"""The README is run: its Python examples execute, and CI runs its test command."""

import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
CI = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_python_examples_run(index, tmp_path, monkeypatch):
    import layerwise_bench as bench

    monkeypatch.chdir(tmp_path)
    before = set(bench.METHODS)
    try:
        exec(compile(BLOCKS[index], f"README block {index}", "exec"), {"__name__": "__readme__"})
    finally:
        for name in set(bench.METHODS) - before:
            bench.METHODS.pop(name)


def test_two_setup_commands_and_ci_runs_the_test_command():
    commands = re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)
    assert len(commands) == 2
    assert "layerwise bench autoencoder" in commands[0]
    test_command = commands[1].split("&& ", 2)[-1]  # after creating and activating the venv
    assert test_command in CI
