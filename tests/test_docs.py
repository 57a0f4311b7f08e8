"""The documentation pages are run (every Python block of docs/*.md executes) and the site is built and checked."""

import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

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
    _reset_accelerate()
    try:
        exec(compile(block, f"{page} block {index}", "exec"), {"__name__": "__docs__"})
    finally:  # a page may register benchmark methods: leave the registry as it was
        for name in set(layerwise_bench.METHODS) - before:
            layerwise_bench.METHODS.pop(name)
        _reset_accelerate()


def _reset_accelerate() -> None:
    """Accelerate keeps one state per process (set by earlier tests too): each example starts as in a fresh one."""
    if "accelerate.state" in sys.modules:
        sys.modules["accelerate.state"].AcceleratorState._reset_state(reset_partial_state=True)


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return [m for m in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+://|#|mailto:", m)]


@pytest.mark.parametrize("page", [ROOT / "README.md", *PAGES], ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    broken = [link for link in _links(page) if not (page.parent / link.split("#")[0]).exists()]
    assert not broken, f"{page.name}: {broken}"


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.refs += [(tag, value) for key, value in attrs if key in ("href", "src") and value]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The documentation site, built as `.ci/run` builds it (strict: a warning fails the build)."""
    pytest.importorskip("mkdocs")
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_every_relative_link_and_image_of_the_built_site_resolves(site: Path) -> None:
    """On the site, not only in the repository: records and examples that docs/ links to are in it."""
    broken, checked = [], 0
    for html in site.rglob("*.html"):
        parser = _Refs()
        parser.feed(html.read_text(encoding="utf-8"))
        for tag, ref in parser.refs:
            parts = urlsplit(ref)
            if parts.scheme or parts.netloc or not parts.path or parts.path.startswith("/"):
                continue
            checked += 1
            target = (html.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file() or site.resolve() not in target.parents:
                broken.append(f"{html.relative_to(site)}: <{tag}> {ref}")
    assert checked > 100
    assert not broken, "\n".join(broken)


def test_the_site_holds_the_records_and_examples_docs_link_to(site: Path) -> None:
    linked = {
        link.split("#")[0].removeprefix("../") for page in PAGES for link in _links(page) if link.startswith("../")
    }
    assert any(link.startswith("benchmarks/") and link.endswith(".png") for link in linked)
    for link in linked:
        target = site / link
        if target.suffix == ".md":  # rendered: benchmarks/x/report.md -> benchmarks/x/report/index.html
            name = target.with_suffix("")
            target = (name.parent if name.name in ("README", "index") else name) / "index.html"
        assert target.is_file(), link
