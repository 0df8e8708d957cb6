"""``flue docs [read <page> | search <query>]``: Flue's documentation, offline.

The pages are the Markdown files of the repository's ``docs/`` folder,
shipped inside the package (``flue/_docs``). Each page has front matter with
a ``title`` and a one-line ``summary`` (a page without them falls back to its
first heading and paragraph). ``flue docs`` lists the pages (stdout, one per
line), ``flue docs read <page>`` prints one as Markdown, ``flue docs search
<words>`` ranks pages by title, headings, summary and text (prefix matches
count, title words most) and shows each match with a line of context;
``--json`` prints ``{"query", "results": [{"path", "title", "summary",
"excerpt", "score"}]}`` instead.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import re
import sys
from dataclasses import dataclass, field
from importlib import resources
from urllib.parse import urlparse

MAX_RESULTS = 8
WEIGHTS = {"title": 4.0, "headings": 3.0, "summary": 2.0, "body": 1.0}
_WORD = re.compile(r"[a-z0-9][a-z0-9_]*")


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=["read", "search"], help="read a page, or search the pages")
    p.add_argument("words", nargs="*", help="the page (for read) or the search words")
    p.add_argument("--json", action="store_true", help="search: print JSON results")


@dataclass
class Page:
    path: str
    title: str
    summary: str
    body: str
    headings: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        head = f"# {self.title}\n\n" + (f"> {self.summary}\n\n" if self.summary else "")
        return head + self.body.strip() + "\n"


def load_pages() -> list[Page]:
    import frontmatter

    folder = resources.files("flue") / "_docs"
    if not folder.is_dir():
        raise FileNotFoundError("could not find Flue's bundled documentation; reinstall flue")
    pages = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".md"):
            continue
        text = entry.read_text(encoding="utf-8")
        try:
            post = frontmatter.loads(text)
            meta, body = dict(post.metadata), post.content
        except Exception as exc:  # a broken page header must not hide the other pages
            print(f"flue: warning: docs page {entry.name} has invalid front matter ({exc}); showing it as is",
                  file=sys.stderr)
            meta, body = {}, text
        title = str(meta.get("title") or "")
        if not title:  # a page without front matter: its H1 is the title
            m = re.match(r"\s*# (.+)\n", body)
            title = m.group(1).strip() if m else entry.name[:-3]
            body = body[m.end():] if m else body
        summary = str(meta.get("summary") or "") or _first_paragraph(body)
        headings = re.findall(r"^#{2,4} (.+)$", body, re.M)
        pages.append(Page(entry.name[:-3], title, summary, body, headings))
    return pages


def _first_paragraph(body: str) -> str:
    for block in re.split(r"\n\s*\n", body.strip()):
        if block and not block.startswith(("#", "```", "|", "-")):
            text = " ".join(block.split())
            return text if len(text) <= 160 else text[:157].rstrip() + "..."
    return ""


def page_name(ref: str) -> str:
    """``persistence``, ``persistence.md``, ``docs/persistence.md``, ``/docs/persistence/`` or a URL."""
    if re.match(r"^[a-z]+://", ref):
        ref = urlparse(ref).path
    ref = ref.strip("/")
    ref = re.sub(r"\.mdx?$", "", ref)
    return ref.rsplit("/", 1)[-1].lower()


def _tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def search(pages: list[Page], query: str) -> list[dict[str, object]]:
    terms = _tokens(query)
    if not terms:
        return []
    fields = [{"title": _tokens(p.title), "headings": _tokens(" ".join(p.headings)),
               "summary": _tokens(p.summary), "body": _tokens(p.body)} for p in pages]

    def hits(words: list[str], term: str) -> float:
        # an exact word counts 1, a word the term is a prefix of (lease -> leases) 0.5
        return sum(1.0 if w == term else 0.5 for w in words if w.startswith(term))

    n = len(pages)
    scored = []
    for page, f in zip(pages, fields, strict=True):
        score = 0.0
        for term in terms:
            df = sum(1 for other in fields if any(hits(words, term) for words in other.values()))
            if not df:
                continue
            idf = math.log(1 + n / df)
            for name, weight in WEIGHTS.items():
                count = hits(f[name], term)
                if count:
                    score += weight * idf * (1 + math.log(count))
        if score > 0:
            scored.append((score, page))
    scored.sort(key=lambda s: (-s[0], s[1].path))
    return [{"path": p.path, "title": p.title, "summary": p.summary, "excerpt": excerpt(p, terms),
             "score": round(s, 2)} for s, p in scored[:MAX_RESULTS]]


def excerpt(page: Page, terms: list[str], width: int = 160) -> str:
    """The first body line that mentions a term, cut around it."""
    for line in page.body.splitlines():
        low = line.lower()
        positions = [m.start() for t in terms for m in [re.search(rf"\b{re.escape(t)}", low)] if m]
        if positions and not line.startswith("```"):
            text = " ".join(line.strip().lstrip("#>-*| ").split())
            found = [m.start() for t in terms if (m := re.search(rf"\b{re.escape(t)}", text.lower()))]
            at = max(0, min(found) - width // 3)
            cut = text[at:at + width]
            return ("…" if at else "") + cut + ("…" if at + width < len(text) else "")
    return page.summary


def main(args: argparse.Namespace) -> int:
    try:
        pages = load_pages()
    except FileNotFoundError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    if args.action is None:
        width = max(len(p.path) for p in pages)
        print(f"Flue documentation ({len(pages)} pages). Read one with 'flue docs read <page>', "
              "search with 'flue docs search <words>'.\n", file=sys.stderr)
        for p in sorted(pages, key=lambda p: p.path):
            print(f"{p.path.ljust(width)}  {p.title}: {p.summary}")
        return 0
    if args.action == "read":
        if len(args.words) != 1:
            print("Error: name one page: flue docs read <page> (see 'flue docs')", file=sys.stderr)
            return 1
        name = page_name(args.words[0])
        by_name = {p.path: p for p in pages}
        if name not in by_name:
            close = difflib.get_close_matches(name, list(by_name), n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            print(f"Error: Unknown docs page: {args.words[0]}.{hint}\n"
                  "Run 'flue docs' to list the pages, or 'flue docs search <words>' to find one.", file=sys.stderr)
            return 1
        sys.stdout.write(by_name[name].markdown())
        return 0
    query = " ".join(args.words).strip()
    if not query:
        print("Error: Missing search query: flue docs search <words>", file=sys.stderr)
        return 1
    results = search(pages, query)
    if args.json:
        print(json.dumps({"query": query, "results": results}, indent=2, ensure_ascii=False))
        return 0
    if not results:
        print(f"No page matches '{query}'. Run 'flue docs' to list the pages.", file=sys.stderr)
        return 1
    width = max(len(str(r["path"])) for r in results)
    for r in results:
        print(f"{str(r['path']).ljust(width)}  {r['title']}  (score {r['score']})\n    {r['excerpt']}")
    print("\nRead a page with: flue docs read <page>", file=sys.stderr)
    return 0
