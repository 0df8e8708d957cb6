"""`flue docs`: the packaged pages listed, read and searched, as a user (or a coding agent) runs it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import REPO, run_flue

PAGES = {"getting-started", "agents", "skills", "workflows", "channels", "sandboxes", "providers", "persistence",
         "http-api", "cli", "plugins", "deployment", "benchmarks"}


def test_every_page_has_a_title_and_a_one_line_summary() -> None:
    import frontmatter

    for path in (REPO / "docs").glob("*.md"):
        if path.name == "benchmarks.md":
            continue  # kept as it is: the title and summary come from its heading and first paragraph
        meta = frontmatter.loads(path.read_text()).metadata
        assert meta.get("title") and meta.get("summary") and "\n" not in meta["summary"], path.name


def test_flue_docs_lists_the_pages() -> None:
    res = run_flue("docs")
    assert res.returncode == 0
    listed = {line.split()[0] for line in res.stdout.splitlines()}
    on_disk = {p.stem for p in (REPO / "docs").glob("*.md")}
    assert PAGES <= listed == on_disk  # the pages, and every page docs/ has
    assert re.search(r"^persistence +Persistence: Where Flue keeps", res.stdout, re.M)
    assert f"{len(on_disk)} pages" in res.stderr


def test_flue_docs_read_prints_a_page_by_any_reasonable_name() -> None:
    body = (REPO / "docs" / "persistence.md").read_text().split("---\n", 2)[2].strip()
    for ref in ("persistence", "persistence.md", "docs/persistence.md", "/docs/persistence/",
                "https://example.com/docs/persistence/"):
        res = run_flue("docs", "read", ref)
        assert res.returncode == 0, ref
        assert res.stdout.startswith("# Persistence\n\n> Where Flue keeps sessions")
        assert body in res.stdout
    res = run_flue("docs", "read", "persistance")
    assert res.returncode == 1 and "Unknown docs page: persistance" in res.stderr and "persistence" in res.stderr


def test_flue_docs_search_ranks_pages_with_a_line_of_context() -> None:
    res = run_flue("docs", "search", "lease")
    assert res.returncode == 0
    first = res.stdout.splitlines()[:2]
    assert first[0].startswith("persistence ") and "lease" in first[1].lower()
    res = run_flue("docs", "search", "durable", "streams", "offset", "--json")
    doc = json.loads(res.stdout)
    assert doc["query"] == "durable streams offset" and doc["results"][0]["path"] == "http-api"
    assert all(set(r) == {"path", "title", "summary", "excerpt", "score"} for r in doc["results"])
    scores = [r["score"] for r in doc["results"]]
    assert scores == sorted(scores, reverse=True) and len(scores) <= 8
    res = run_flue("docs", "search", "zyzzyvaqq")
    assert res.returncode == 1 and "No page matches" in res.stderr
    res = run_flue("docs", "search")
    assert res.returncode == 1 and "Missing search query" in res.stderr


def test_the_docs_ship_in_the_package() -> None:
    from importlib import resources

    shipped = {p.name for p in (resources.files("flue") / "_docs").iterdir()}
    assert {f"{name}.md" for name in PAGES} <= shipped
    assert (Path(str(resources.files("flue"))) / "_docs").resolve() == (REPO / "docs").resolve()
