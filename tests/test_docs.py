"""The documentation pages are run: every Python block of docs/*.md executes."""

import re
from pathlib import Path

import pytest

PAGES = sorted((Path(__file__).resolve().parents[1] / "docs").glob("*.md"))
BLOCKS = [(page.name, i, block) for page in PAGES
          for i, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))]


def test_there_are_examples() -> None:
    assert any(name == "locoprop-models.md" for name, _, _ in BLOCKS)


@pytest.mark.parametrize("page,index,block", BLOCKS, ids=[f"{n}:{i}" for n, i, _ in BLOCKS])
def test_python_examples_run(page: str, index: int, block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(block, f"{page} block {index}", "exec"), {"__name__": "__docs__"})
