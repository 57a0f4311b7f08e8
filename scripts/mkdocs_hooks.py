"""mkdocs hook: the records and examples that docs/ links to become part of the site.

The pages in docs/ link to files beside docs/ (``../benchmarks/<record>/report.md``, its plots,
``../examples/*.py``). Read in the repository those links resolve; on the built site they would
point outside it. This hook adds every repository file that a page links to (and, for Markdown
files, what those link to in turn) to the site under its repository path (``benchmarks/...``,
``examples/...``), so records are rendered as pages with their plots, other files are copied as
they are, and the site works offline. Links in docs/ pages are rewritten from ``../benchmarks/x``
to ``benchmarks/x``; mkdocs then resolves and validates them like any other link.

Enabled in mkdocs.yml (``hooks:``); tests/test_docs.py builds the site and checks every link.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]

# [text](target) or [text](target "title"), and src="..." / href="..." in raw HTML.
_MD_LINK = re.compile(r"(\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
_HTML_LINK = re.compile(r"((?:src|href)=\")([^\"]+)(\")")
_FENCE = re.compile(r"(^```.*?^```[^\n]*$)", flags=re.S | re.M)
_EXTERNAL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:|#|/")


def _targets(text: str) -> list[str]:
    """Relative link targets of Markdown text, outside fenced code, without their anchors."""
    prose = _FENCE.sub("", text)
    found = [m.group(2) for m in _MD_LINK.finditer(prose)] + [m.group(2) for m in _HTML_LINK.finditer(prose)]
    return [t.split("#")[0] for t in found if not _EXTERNAL.match(t) and t.split("#")[0]]


def _outside_file(source: Path, target: str, docs_dir: Path) -> Path | None:
    """The repository file (outside docs_dir) that ``target``, linked from ``source``, names; else None."""
    path = (source.parent / target).resolve()
    if not path.is_file() or docs_dir in path.parents:
        return None
    if ROOT not in path.parents or path.relative_to(ROOT).parts[0].startswith("."):
        return None
    return path


def _virtual_uri(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def on_files(files: Files, config: Any) -> Files:
    docs_dir = Path(config.docs_dir).resolve()
    todo = [Path(f.abs_src_path) for f in files.documentation_pages() if f.abs_src_path]
    seen: set[Path] = set()
    while todo:
        source = todo.pop()
        if source in seen:
            continue
        seen.add(source)
        for target in _targets(source.read_text(encoding="utf-8")):
            path = _outside_file(source, target, docs_dir)
            if path is None or files.get_file_from_path(_virtual_uri(path)) is not None:
                continue
            files.append(
                File(
                    _virtual_uri(path),
                    src_dir=str(ROOT),
                    dest_dir=config.site_dir,
                    use_directory_urls=config.use_directory_urls,
                )
            )
            if path.suffix == ".md":
                todo.append(path)
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """In docs/ pages, point links at the copies: ``../benchmarks/x`` becomes ``benchmarks/x``."""
    source = page.file.abs_src_path
    if source is None:
        return markdown
    source_path = Path(source).resolve()
    docs_dir = Path(config.docs_dir).resolve()
    if docs_dir not in source_path.parents:
        return markdown  # a record added above: its links are already relative to its own place

    def rewrite(match: re.Match[str]) -> str:
        target, _, anchor = match.group(2).partition("#")
        if not target or _EXTERNAL.match(match.group(2)):
            return match.group(0)
        path = _outside_file(source_path, target, docs_dir)
        if path is None or files.get_file_from_path(_virtual_uri(path)) is None:
            return match.group(0)
        new = posixpath.relpath(_virtual_uri(path), posixpath.dirname(page.file.src_uri) or ".")
        return match.group(1) + new + ("#" + anchor if anchor else "") + match.group(3)

    parts = _FENCE.split(markdown)  # odd parts are fenced code: left as they are
    for i in range(0, len(parts), 2):
        parts[i] = _HTML_LINK.sub(rewrite, _MD_LINK.sub(rewrite, parts[i]))
    return "".join(parts)
