"""The documentation pages are run: every Python block of docs/*.md executes."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md"))
BLOCKS = [
    (page.name, i, block)
    for page in PAGES
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))
]


def test_there_are_examples() -> None:
    assert any(name == "locoprop-models.md" for name, _, _ in BLOCKS)


@pytest.mark.parametrize("page,index,block", BLOCKS, ids=[f"{n}:{i}" for n, i, _ in BLOCKS])
def test_python_examples_run(
    page: str, index: int, block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import layerwise_bench

    monkeypatch.chdir(tmp_path)
    before = set(layerwise_bench.METHODS)
    try:
        exec(compile(block, f"{page} block {index}", "exec"), {"__name__": "__docs__"})
    finally:  # a page may register benchmark methods: leave the registry as it was
        for name in set(layerwise_bench.METHODS) - before:
            layerwise_bench.METHODS.pop(name)


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return [m for m in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+://|#|mailto:", m)]


@pytest.mark.parametrize("page", [ROOT / "README.md", *PAGES], ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    broken = [link for link in _links(page) if not (page.parent / link.split("#")[0]).exists()]
    assert not broken, f"{page.name}: {broken}"
