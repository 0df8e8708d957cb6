"""What scrubbing known secrets costs per event and per whole prompt (in process, no server).

Records the events of real prompts through the harness with the in-process
scripted model: a one-turn reply of ``--reply-chars`` characters in 4-character
deltas, and a tool turn (``bash``) followed by that reply. Then times, over
those events' wire dicts, what :mod:`flue.redaction` adds where data leaves:
``scrub()`` of each event's wire form (the hook in ``FlueEvent.wire``), and
``observed()`` (what ``flue_observe`` plugins get), with ``--secrets`` known
secret values none of which occurs (the usual case), and with one that occurs
in the final text (so ``message_end``, ``turn``, ``operation`` are copied).

    .venv/bin/python benchmarks/redaction.py            # ~10 s
    .venv/bin/python benchmarks/redaction.py --quick

The target (issue 19) is at most 3 ms of server CPU per whole prompt.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import string
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit as bk  # noqa: E402

SECRET = "sk-bench-4f1c9e2a7b3d6e8f0a1b"


async def prompt_events(reply_chars: int, tool_turn: bool) -> list[Any]:
    """The events one prompt emits (the objects, as emitters build them)."""
    import flue
    from flue.events import EventSink
    from flue.testing import ScriptedModel, calls, reply, tool_call

    text = ("The answer is in the logs; " * (reply_chars // 27 + 1))[:reply_chars - len(SECRET) - 1] + " " + SECRET
    turns = [calls(tool_call("bash", {"command": "echo hello; ls /"})), reply(text)] if tool_turn else [reply(text)]
    events: list[Any] = []
    sink = EventSink([events.append])
    agent = flue.create_agent(name="bench", model=ScriptedModel(turns), tools=["bash"] if tool_turn else [])
    harness = await flue.init(agent, sink=sink)
    try:
        await (await harness.session()).prompt("What is in the logs?")
    finally:
        await harness.close()
    return events


def fresh_wires(events: list[Any]) -> list[dict[str, Any]]:
    from flue import redaction

    saved = redaction._matcher
    redaction._matcher = None  # the unscrubbed wire forms, the input of the hook
    try:
        out = []
        for event in events:
            event._wire = None
            out.append(event.wire())
            event._wire = None
        return out
    finally:
        redaction._matcher = saved


def per_prompt_ms(fn: Any, items: list[Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        for item in items:
            fn(item)
        best = min(best, time.process_time() - t0)
    return best * 1000


def known_secrets(n: int) -> list[str]:
    """``n`` token-like values (API keys, bot tokens, signing secrets) of 20 to 48 characters."""
    rnd = random.Random(19)
    alphabet = string.ascii_letters + string.digits
    prefixes = ["sk-", "sk-ant-", "xoxb-", "ghp_", "AKIA", "whsec_", "", "Bearer "]
    return [rnd.choice(prefixes) + "".join(rnd.choices(alphabet, k=rnd.randint(20, 40))) for _ in range(n)]


def measure(events: list[Any], secrets: int, repeat: int) -> dict[str, Any]:
    from flue import redaction

    wires = fresh_wires(events)
    decoys = known_secrets(secrets)
    out: dict[str, Any] = {"events": len(events)}
    redaction._matcher = None
    out["scrub_nothing_known_ms"] = per_prompt_ms(redaction.scrub, wires, repeat)
    redaction._matcher = redaction._compile(decoys)
    out["scrub_none_found_ms"] = per_prompt_ms(redaction.scrub, wires, repeat)
    changed = sum(redaction.scrub(w) is not w for w in wires)
    redaction._matcher = redaction._compile([*decoys, SECRET])
    out["scrub_one_found_ms"] = per_prompt_ms(redaction.scrub, wires, repeat)
    out["events_copied"] = sum(redaction.scrub(w) is not w for w in wires)
    assert changed == 0 and out["events_copied"] > 0

    def observe(event: Any) -> None:
        event._wire = None
        redaction.observed(event)

    # observed() on top of wire(): its extra cost is the marker search (and a copy of changed events)
    wire_only = per_prompt_ms(lambda e: (setattr(e, "_wire", None), e.wire()), events, repeat)
    out["observed_one_found_ms"] = max(0.0, per_prompt_ms(observe, events, repeat) - wire_only)
    redaction._matcher = None
    out["wire_ms"] = per_prompt_ms(lambda e: (setattr(e, "_wire", None), e.wire()), events, repeat)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description="Cost of flue.redaction per event and per prompt.")
    parser.add_argument("--reply-chars", type=int, default=2000, help="characters of the reply (default 2000)")
    parser.add_argument("--secrets", type=int, default=20, help="known secret values (default 20)")
    parser.add_argument("--repeat", type=int, default=50, help="timed passes; the best is reported (default 50)")
    bk.add_output_flags(parser, quick="5 passes")
    args = parser.parse_args()
    if args.quick:
        args.repeat = 5
    info = bk.machine_info()
    rows = []
    for name, tool_turn in (("one turn", False), ("tool turn + reply", True)):
        events = asyncio.run(prompt_events(args.reply_chars, tool_turn))
        rows.append({"prompt": name, **measure(events, args.secrets, args.repeat)})
    bk.print_machine(info)
    print(f"settings: {args.reply_chars}-character reply in 4-character deltas; {args.secrets} known secrets; "
          f"best of {args.repeat} passes; CPU time of this process\n")
    print(bk.table(
        ["prompt", "events", "wire() ms", "scrub, none known ms", "scrub, none found ms", "scrub, one found ms",
         "events copied", "observed() extra ms", "per event µs (none found)"],
        [[r["prompt"], r["events"], f"{r['wire_ms']:.2f}", f"{r['scrub_nothing_known_ms']:.3f}",
          f"{r['scrub_none_found_ms']:.3f}", f"{r['scrub_one_found_ms']:.3f}", r["events_copied"],
          f"{r['observed_one_found_ms']:.3f}", f"{r['scrub_none_found_ms'] / r['events'] * 1000:.1f}"] for r in rows],
        markdown=args.markdown,
    ))
    worst = max(r["scrub_one_found_ms"] + r["observed_one_found_ms"] for r in rows)
    print(f"\nworst case per prompt (scrub + observed, one secret found): {worst:.3f} ms (target <= 3 ms)")
    bk.write_json(args.json, {"benchmark": "redaction", "machine": info, "settings": vars(args), "rows": rows})
    return 0 if worst <= 3.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
