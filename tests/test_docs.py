"""The README and docs/ stay true: the modules, files, links and command-line options they name exist, and
the README's package layout lists every package and module of the tree."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from .conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_docs_has_a_page_per_stage_linked_from_the_readme():
    readme = _text(REPO / "README.md")
    for page in ("data", "prune", "export", "latency", "report", "deploy", "gate", "run-directory"):
        assert f"(docs/{page}.md)" in readme and (REPO / "docs" / f"{page}.md").is_file()
    assert len(readme.splitlines()) < 150, "the README's reference belongs in docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_named_modules_files_and_links_exist(page):
    text = _text(page)
    bad = [d for d in sorted(set(re.findall(r"\bglp_(?:bench|runtime)(?:\.\w+)+", text))) if not _resolves(d)]
    assert not bad, f"{page.name} names modules that do not exist: {bad}"
    paths = set(re.findall(r"`((?:glp_bench|deploy|benchmarks|tests|docs)/[\w./-]*)`", text))
    missing = [p for p in sorted(paths) if "*" not in p and "<" not in p and not (REPO / p).exists()]
    assert not missing, f"{page.name} names files that do not exist: {missing}"
    links = re.findall(r"\]\(((?!https?:)[^)#]+)", text)
    dead = [link for link in links if not (page.parent / link).exists()]
    assert not dead, f"{page.name} links to missing files: {dead}"


def _parsers() -> dict:
    from glp_bench.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return dict(sub.choices)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_command_lines_use_options_that_exist(page):
    parsers = _parsers()
    wrong = []
    for line in re.findall(r"glp-bench ([a-z][a-z-]*)((?: +[^`|\n]*)?)", _text(page)):
        command, rest = line
        if command not in parsers:
            continue
        options = parsers[command]._option_string_actions
        for opt in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest):
            if opt not in options:
                wrong.append(f"glp-bench {command} {opt}")
    assert not wrong, f"{page.name} shows options the commands do not have: {sorted(set(wrong))}"


def test_readme_layout_lists_every_package_and_module():
    readme = _text(REPO / "README.md")
    block = readme[readme.index("## Package layout"):]
    block = block[block.index("```") + 3:]
    block = block[:block.index("```")]
    entries, current = {}, None
    for line in block.splitlines():
        m = re.match(r"^  (\w+)/", line)
        if m:
            current = m.group(1)
        elif re.match(r"^\S", line):
            current = None
        if current:
            entries[current] = entries.get(current, "") + " " + line
    package = REPO / "glp_bench"
    packages = sorted(p.name for p in package.iterdir() if (p / "__init__.py").is_file())
    assert sorted(entries) == packages, "the README's layout and the tree list different packages"
    for name in packages:
        for module in sorted((package / name).glob("*.py")):
            if module.stem != "__init__":
                assert re.search(rf"\b{module.stem}\b", entries[name]), f"layout misses {name}/{module.name}"
