"""Summarize a py-spy ``--format raw`` profile (collapsed stacks) of the Flue server.

    .venv/bin/python benchmarks/profile_summary.py PROFILE.txt [--top 30] [--idle]

Prints, for the busiest functions, the share of samples in which each is on
the stack (inclusive) and at the top (self), and a breakdown by package
(flue's layers, litellm, aiohttp, pydantic, ...), charging each sample to
its innermost frame outside the standard library (so ``json.dumps`` called
by Flue's persistence counts as persistence). Samples of idle threads (the event loop waiting
in ``select``/``epoll``, worker threads waiting on a queue) are left out unless
``--idle``. Samples inside the import machinery (the first model call
imports litellm, which takes seconds) are left out unless ``--imports``, so
the summary describes the steady state.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit as bk  # noqa: E402

IMPORTING = ("_find_and_load (", "_lock_unlock_module (")  # importing, or waiting for another thread's import
#: innermost frames of a thread that is waiting, not working (py-spy's own idle detection misses
#: threads blocked on a lock): the event loop in epoll, executor and anyio workers on their queues
IDLE = re.compile(
    r"^(EpollSelector\.select|select|Condition\.wait|Event\.wait|Queue\.get|SimpleQueue\.get|Thread\.join) \("
    r"|^_worker \(.*concurrent/futures/thread\.py:81\)$"
)
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?):(?P<line>\d+)\)$")
#: package buckets, by a path fragment; first match wins (innermost frame first)
BUCKETS = [
    ("litellm", "/litellm/"),
    ("openai sdk", "/openai/"),
    ("httpx/httpcore", "/httpx/"),
    ("httpx/httpcore", "/httpcore/"),
    ("aiohttp", "/aiohttp/"),
    ("pydantic", "/pydantic"),
    ("tiktoken/tokenizers", "/tiktoken"),
    ("bashkit", "bashkit"),
    ("flue persistence (sqlite)", "/flue/persistence/"),
    ("flue harness", "/flue/harness/"),
    ("flue models", "/flue/models/"),
    ("flue sandbox", "/flue/sandbox/"),
    ("flue runtime", "/flue/runtime/"),
    ("flue server", "/flue/server/"),
    ("flue (other)", "/flue/"),
]


def frames_of(stack: str) -> list[str]:
    parts = stack.split(";")
    # py-spy raw format: "process;thread;outermost;...;innermost"
    return [p for p in parts if FRAME.match(p)]


def bucket(frames: list[str]) -> str:
    """The package of the innermost frame outside the standard library (json, asyncio, sqlite3...
    called from Flue count as Flue); samples with no such frame are the event loop's own."""
    for frame in reversed(frames):
        m = FRAME.match(frame)
        assert m
        path = m["file"]
        if "/flue/cli/" in path or path.endswith("/flue/__main__.py"):
            continue  # the CLI's frames below asyncio.run: what is above them is the event loop's own
        for name, needle in BUCKETS:
            if needle in path:
                return name
        if "site-packages/" in path:
            return "other packages: " + path.split("site-packages/", 1)[1].split("/", 1)[0]
    return "stdlib only (event loop, threads)"


def main() -> int:
    parser = argparse.ArgumentParser(description="Summarize a py-spy raw profile of the Flue server.")
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--idle", action="store_true", help="keep idle samples")
    parser.add_argument("--imports", action="store_true", help="keep samples taken while importing modules")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    buckets: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = idle = importing = 0
    for line in Path(args.profile).read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = frames_of(stack)
        if not frames:
            continue
        if not args.idle and IDLE.search(frames[-1]):
            idle += count
            continue
        if not args.imports and any(marker in stack for marker in IMPORTING):
            importing += count
            continue
        total += count
        threads["other threads" if frames[0].startswith("Thread._bootstrap") else "main thread (event loop)"] += count
        for frame in set(map(short, frames)):
            inclusive[frame] += count
        own[short(frames[-1])] += count
        buckets[bucket(frames)] += count
    if not total:
        print("no busy samples")
        return 1
    print(f"{total} busy samples ({idle} idle and {importing} importing samples left out)\n")
    print(bk.table(["thread", "% of busy samples"], [[t, n * 100 / total] for t, n in threads.most_common()],
                   markdown=args.markdown))
    print()
    print(bk.table(["package (innermost frame)", "% of busy samples"],
                   [[b, n * 100 / total] for b, n in buckets.most_common()], markdown=args.markdown))
    print()
    print(bk.table(["function (inclusive)", "% inclusive", "% self"],
                   [[f, n * 100 / total, own[f] * 100 / total] for f, n in inclusive.most_common(args.top)],
                   markdown=args.markdown))
    print()
    print(bk.table(["function (self)", "% self"],
                   [[f, n * 100 / total] for f, n in own.most_common(args.top)], markdown=args.markdown))
    return 0


def short(frame: str) -> str:
    m = FRAME.match(frame)
    if not m:
        return frame
    path = m["file"]
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/lib/python3":
                path = "stdlib/" + path.split("/", 1)[1] if "/" in path else path
            break
    return f"{m['func']} ({path}:{m['line']})"


if __name__ == "__main__":
    raise SystemExit(main())
