"""Shared pieces of the benchmarks: processes, the scratch project, load generation, tables.

Nothing here is part of Flue; the benchmarks drive Flue only from outside,
through ``flue start`` and HTTP, like a deployment would.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import datetime as _dt
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")

# -- the machine -------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """What the numbers came from: CPUs, CPU model, RAM, Python, library versions, date, commit."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = _proc_field(Path("/proc/meminfo"), "MemTotal")
    versions: dict[str, str] = {}
    from importlib.metadata import PackageNotFoundError, version

    for pkg in ("flue", "aiohttp", "litellm", "bashkit", "pydantic"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = "-"
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "ram_gib": round((mem_kb or 0) / 1024 / 1024, 1),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "packages": versions,
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "commit": commit,
    }


def print_machine(info: dict[str, Any]) -> None:
    pk = ", ".join(f"{k} {v}" for k, v in info["packages"].items())
    print(
        f"machine: {info['nproc']} CPU(s), {info['cpu_model']}, {info['ram_gib']} GiB RAM, "
        f"{info['implementation']} {info['python']}, Linux {info['kernel']}"
    )
    print(f"         {pk}; commit {info['commit'] or '?'}; {info['date']}")
    noise = f"; other processes used {info['other_cpu_before']:.2f} CPU at start" if "other_cpu_before" in info else ""
    during = f", {info['other_cpu_during']:.2f} CPU on average during the run" if "other_cpu_during" in info else ""
    print(f"         load average {info['loadavg_1m']} at start{noise}{during}")


# -- /proc -------------------------------------------------------------------------------


def _proc_field(path: Path, name: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (``VmRSS`` in ``/proc/<pid>/status``), in bytes."""
    kb = _proc_field(Path(f"/proc/{pid}/status"), "VmRSS")
    if kb is None:
        raise RuntimeError(f"cannot read VmRSS of pid {pid}")
    return kb * 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (all its threads)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)


def system_busy_seconds() -> float:
    """CPU seconds all CPUs have spent busy since boot (``/proc/stat``: everything but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


class OtherLoad:
    """CPU used by processes other than ours over an interval: the noise a shared machine adds.

    ``start()`` then ``stop(our_cpu_seconds)``; the result is in CPUs (1.0 = one core busy).
    """

    def start(self) -> None:
        self._busy0, self._t0 = system_busy_seconds(), time.perf_counter()

    def stop(self, ours: float) -> float:
        elapsed = time.perf_counter() - self._t0
        return max(0.0, (system_busy_seconds() - self._busy0 - ours) / elapsed) if elapsed > 0 else 0.0


class RunNoise:
    """Average CPU other processes used during a whole run (ours: this process and the children it
    has waited for, from ``getrusage``; so call :meth:`stop` after the subprocesses are stopped)."""

    def __init__(self) -> None:
        self._probe = OtherLoad()
        self._ours0 = self._ours()
        self._probe.start()

    @staticmethod
    def _ours() -> float:
        import resource

        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    def stop(self) -> float:
        return self._probe.stop(self._ours() - self._ours0)


def other_load(seconds: float = 1.0, pids: Sequence[int] = ()) -> float:
    """CPUs kept busy over ``seconds`` by processes other than this one and ``pids``."""
    probe = OtherLoad()
    probe.start()
    cpu0 = time.process_time()
    theirs0 = sum(cpu_seconds(p) for p in pids)
    time.sleep(seconds)
    return probe.stop(time.process_time() - cpu0 + sum(cpu_seconds(p) for p in pids) - theirs0)


def wait_quiet(max_wait: float, pids: Sequence[int] = (), threshold: float = 0.1) -> float:
    """Wait (up to ``max_wait`` s) until other processes use under ``threshold`` CPU; returns the last load."""
    deadline = time.monotonic() + max_wait
    load = other_load(0.5, pids)
    while load > threshold and time.monotonic() < deadline:
        load = other_load(0.5, pids)
    return load


def quiet_check(seconds: float = 1.0) -> float:
    """CPUs busy over ``seconds`` while we do nothing (other users of the machine); warns when > 0.1."""
    load = other_load(seconds)
    if load > 0.1:
        print(
            f"warning: other processes are using {load:.2f} CPU(s) of {len(os.sched_getaffinity(0))}; "
            "results will be noisy (see the 'other CPU' column)", file=sys.stderr,
        )
    return load


# -- subprocesses ------------------------------------------------------------------------


_LIVE: set[Proc] = set()


def _stop_leftovers() -> None:
    for proc in list(_LIVE):
        with contextlib.suppress(Exception):
            proc.stop(term_timeout=5)


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


atexit.register(_stop_leftovers)
# SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so every `finally` stops its subprocesses
signal.signal(signal.SIGTERM, _terminate)


class Proc:
    """A subprocess we started, with its stderr in a log file; :meth:`stop` ends it by PID.

    Subprocesses run in their own session (a Ctrl-C reaches only us, and we stop them in order);
    any still alive at interpreter exit are stopped by an ``atexit`` hook.
    """

    def __init__(
        self, name: str, argv: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        cpus: set[int] | None = None, stdout: Any = subprocess.DEVNULL, log_dir: Path | None = None,
    ):
        self.name = name
        log_dir = log_dir or Path(tempfile.gettempdir())
        self.log_path = log_dir / f"{name}-{os.getpid()}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        preexec = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        self.popen = subprocess.Popen(
            list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=self._log,
            preexec_fn=preexec, start_new_session=True,
        )
        self.pid = self.popen.pid
        self.target_pid = self.pid  # the process measured and signalled (a wrapper's child, with py-spy)
        _LIVE.add(self)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, *, term_timeout: float = 15.0) -> int | None:
        """SIGTERM the target, wait, then SIGKILL (by PID: the target, then our child); returns the exit code."""
        if self.popen.poll() is None:
            try:
                os.kill(self.target_pid, signal.SIGTERM)
                self.popen.wait(timeout=term_timeout)
            except subprocess.TimeoutExpired:
                for pid in dict.fromkeys((self.target_pid, self.pid)):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.popen.wait(timeout=5)
            except ProcessLookupError:
                pass
        _LIVE.discard(self)
        self._log.close()
        return self.popen.returncode


def wait_for_log(proc: Proc, pattern: str, timeout: float = 30.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(pattern, proc.log())
        if match:
            return match
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.log()}")
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} did not print {pattern!r} within {timeout}s:\n{proc.log()}")


def start_model_server(*, cpus: set[int] | None = None, reply: str = "OK, done.",
                       chunk_size: int = 16, script: str = "fixed") -> tuple[Proc, str]:
    """The endless scripted model server (benchmarks/model_server.py) in its own process."""
    proc = Proc(
        "model-server",
        [PYTHON, str(BENCH_DIR / "model_server.py"), "--reply", reply, "--chunk-size", str(chunk_size),
         "--script", script],
        cpus=cpus, stdout=subprocess.PIPE,
    )
    assert proc.popen.stdout is not None
    line = proc.popen.stdout.readline().decode().strip()  # "URL http://127.0.0.1:PORT/v1"
    if not line.startswith("URL "):
        proc.stop()
        raise RuntimeError(f"model server did not start: {line!r}\n{proc.log()}")
    return proc, line.split(" ", 1)[1]


AGENT_MD = """\
---
description: Benchmark agent
http: true
{tools}---
You are terse. Answer in one short sentence.
"""

WORKFLOW_PY = '''\
"""One prompt to the benchmark agent."""

http = True


async def run(ctx):
    harness = await ctx.init("bench")
    session = await harness.session()
    reply = await session.prompt(ctx.payload.get("message", "hi"))
    return {"text": reply.text}
'''


def write_project(
    root: Path, model_url: str, *, db_path: Path | None = None, tools: str = "default",
    coordinator: dict[str, float] | None = None,
) -> Path:
    """A scratch Flue project: the scripted provider, agent ``bench`` and workflow ``bench`` (both HTTP)."""
    persistence = f"persistence: {{kind: sqlite, path: {db_path}}}\n" if db_path else ""
    if coordinator:
        persistence += "coordinator: {" + ", ".join(f"{k}: {v}" for k, v in coordinator.items()) + "}\n"
    config = textwrap.dedent(
        f"""\
        model: scripted/bench
        providers:
          scripted: {{api: openai-completions, base_url: {model_url}, api_key: bench-key}}
        """
    ) + persistence
    files = {
        "flue.yaml": config,
        "agents/bench.md": AGENT_MD.format(tools="tools: []\n" if tools == "none" else ""),
        "workflows/bench.py": WORKFLOW_PY,
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def flue_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("FLUE_MODEL", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def child_pids(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def start_flue_server(
    root: Path, *, cpus: set[int] | None = None, wrap: Sequence[str] = (), spy: Sequence[str] = (),
    grace: float = 1.0, extra: Sequence[str] = (),
) -> tuple[Proc, str]:
    """``flue start`` on a free loopback port; returns (proc, base URL).

    ``extra`` is appended to ``flue start``'s arguments (e.g. ``--loop asyncio``).
    ``wrap`` replaces the interpreter (e.g. ``python -m cProfile -o F``); ``spy``
    is a launcher such as ``py-spy record -o F --``, whose child is the server
    (then ``proc.target_pid`` is the server's PID, used for RSS, CPU and SIGTERM).
    """
    argv = [*spy, *(wrap or [PYTHON])]
    argv += ["-m", "flue", "start", "--root", str(root), "--host", "127.0.0.1", "--port", "0", "--grace", str(grace), *extra]
    proc = Proc("flue-server", argv, cwd=root, env=flue_env(), cpus=cpus)
    try:
        match = wait_for_log(proc, r"serving .* on (http://127\.0\.0\.1:\d+)", timeout=60)
        if spy:
            children = child_pids(proc.pid)
            if len(children) != 1:
                raise RuntimeError(f"cannot find the server under {spy[0]} (children: {children})")
            proc.target_pid = children[0]
    except BaseException:
        proc.stop()
        raise
    return proc, match.group(1)


@dataclass
class Served:
    """A scratch project served by ``flue start`` against its own scripted model server."""

    root: Path
    db: Path | None
    flue: Proc
    base: str

    @property
    def pid(self) -> int:
        return self.flue.target_pid


@contextlib.contextmanager
def served_project(prefix: str, persistence: str, tools: str) -> Any:
    """Start the model server and ``flue start`` on a fresh project; stop both and delete it after."""
    import shutil

    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    model, url = start_model_server()
    flue: Proc | None = None
    try:
        root = workdir / "project"
        db = root / ".flue" / "state.db" if persistence == "file" else None
        write_project(root, url, db_path=db, tools=tools)
        flue, base = start_flue_server(root)
        yield Served(root, db, flue, base)
    finally:
        if flue is not None:
            flue.stop()
        model.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# -- load generation ---------------------------------------------------------------------

#: (worker index, request number) -> (path and query, JSON body)
RequestFactory = Callable[[int, int], tuple[str, Any]]


@dataclass
class CellResult:
    scenario: str
    concurrency: int
    requests: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    rps: float = 0.0
    p50_ms: float = float("nan")
    p90_ms: float = float("nan")
    p99_ms: float = float("nan")
    max_ms: float = float("nan")
    mean_ms: float = float("nan")
    server_cpu_ms_per_req: float = float("nan")
    model_cpu_ms_per_req: float = float("nan")
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["error_count"] = self.error_count
        return data


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def drive(
    session: Any, base_url: str, factory: RequestFactory, *, concurrency: int, duration: float | None,
    max_requests: int | None, expect: int, timeout: float = 120.0,
) -> tuple[list[float], dict[str, int], list[str], float]:
    """``concurrency`` closed-loop workers, each sending its next request when the last one is answered.

    ``session``: an aiohttp ``ClientSession``, or a :class:`RawHTTP` for ``base_url`` (the lean client).

    Stops issuing after ``duration`` seconds or ``max_requests`` requests (whichever is given/first),
    then waits for what is in flight. Returns (latencies of successful requests in seconds,
    error counts by kind, a few error samples, elapsed seconds).
    """
    import aiohttp

    latencies: list[float] = []
    errors: dict[str, int] = {}
    samples: list[str] = []
    issued = 0
    start = time.perf_counter()
    deadline = start + duration if duration is not None else None
    client_timeout = aiohttp.ClientTimeout(total=timeout)

    def record_error(kind: str, detail: str) -> None:
        errors[kind] = errors.get(kind, 0) + 1
        if len(samples) < 5:
            samples.append(f"{kind}: {detail[:300]}")

    async def worker(w: int) -> None:
        nonlocal issued
        n = 0
        while True:
            now = time.perf_counter()
            if deadline is not None and now >= deadline:
                return
            if max_requests is not None and issued >= max_requests:
                return
            issued += 1
            path, body = factory(w, n)
            n += 1
            t0 = time.perf_counter()
            try:
                if isinstance(session, RawHTTP):
                    status, payload = await session.post(path, body, timeout)
                else:
                    async with session.post(base_url + path, json=body, timeout=client_timeout) as resp:
                        payload = await resp.read()
                        status = resp.status
            except Exception as exc:  # connection refused/reset, timeouts: errors, not hidden
                record_error(type(exc).__name__, str(exc))
                continue
            if status != expect:
                record_error(f"HTTP {status}", payload.decode(errors="replace"))
                continue
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return latencies, errors, samples, time.perf_counter() - start


class RawHTTP:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: one connection per worker, JSON POSTs.

    The load generator shares the machine with the servers it measures; aiohttp's client costs
    ~0.3-0.5 ms of CPU per request, enough to cap a fast server below its capacity. This one
    sends pre-encoded requests and reads only the status line, ``Content-Length`` or chunked
    bodies, so a cell measures the server, not the client."""

    def __init__(self, base_url: str):
        from urllib.parse import urlsplit

        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._prefix = parts.path.rstrip("/")
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, path: str, body: Any, timeout: float) -> tuple[int, bytes]:
        data = json.dumps(body).encode()
        head = (f"POST {self._prefix}{path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n").encode()
        conn = self._idle.pop() if self._idle else await asyncio.open_connection(self.host, self.port)
        try:
            status, payload, keep = await asyncio.wait_for(self._exchange(conn, head + data), timeout)
        except BaseException:
            conn[1].close()
            raise
        if keep:
            self._idle.append(conn)
        else:
            conn[1].close()
        return status, payload

    @staticmethod
    async def _exchange(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes) -> tuple[int, bytes, bool]:
        reader, writer = conn
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        keep = headers.get("connection", "").lower() != "close"
        if "content-length" in headers:
            payload = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
            await reader.readuntil(b"\r\n")
            payload = b"".join(chunks)
        else:
            payload, keep = await reader.read(), False
        return status, payload, keep

    def close(self) -> None:
        for _reader, writer in self._idle:
            writer.close()
        self._idle.clear()


def summarize(
    cell: CellResult, latencies: list[float], errors: dict[str, int], samples: list[str], elapsed: float
) -> CellResult:
    values = sorted(latencies)
    cell.ok = len(values)
    cell.errors = errors
    cell.error_samples = samples
    cell.requests = cell.ok + sum(errors.values())
    cell.elapsed_s = round(elapsed, 3)
    cell.rps = cell.ok / elapsed if elapsed > 0 else 0.0
    if values:
        cell.p50_ms = percentile(values, 50) * 1000
        cell.p90_ms = percentile(values, 90) * 1000
        cell.p99_ms = percentile(values, 99) * 1000
        cell.max_ms = values[-1] * 1000
        cell.mean_ms = sum(values) / len(values) * 1000
    return cell


# -- output ------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 1) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, markdown: bool = False) -> str:
    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))]
        return ("| " + " | ".join(parts) + " |") if markdown else "  ".join(parts)

    out = [line(headers)]
    if markdown:
        out.append("|" + "|".join(("-" * (w + 1) + ":") if i else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|")
    else:
        out.append("  ".join("-" * w for w in widths))
    out += [line(r) for r in cells]
    return "\n".join(out)


def add_output_flags(parser: Any, quick: str) -> None:
    """The flags every benchmark takes: ``--quick`` (a smoke run; ``quick`` says what it does),
    ``--json FILE`` and ``--markdown``."""
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--json", metavar="FILE", help="write the results and the machine description here")
    parser.add_argument("--markdown", action="store_true", help="print tables as Markdown")


def write_json(path: str | None, data: dict[str, Any]) -> None:
    if not path:
        return
    Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"wrote {path}")


def parse_int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]
