"""``flue dev``'s engine: serve a project in dev mode and reload it when its files change.

Watched: the source root's ``agents/``, ``workflows/``, ``skills/``,
``channels/`` and ``plugins/`` (recursively), the project's ``flue.yaml`` /
``flue.yml`` and ``.env`` (or the ``--env`` file), and the creation of any of
those directories (or of a ``.flue/`` or ``src/`` source root). Changes are
debounced (150 ms) by watchfiles. Editor temp files (swap files, vim's
``4913`` probe, backups, emacs lock files: :func:`editor_temp_file`) neither
reload nor show in "changed:" messages.

A reload loads the project again in this process. A project with errors is
not served: its diagnostics are printed and the last good project keeps
serving. A good project is swapped in place (:meth:`Runtime.use_project`):
persistence, the coordinator and work in flight are kept, so nothing is lost
across reloads (an in-memory database included); only a change to the
``persistence:`` configuration opens a new runtime (the old one drains, then
closes). Every reload builds a fresh application (so plugins' ``flue_app``
hooks run again) and swaps it onto the listening socket without refusing a
connection (:class:`~flue.server.serve.Listener`). ``.env`` changes update the
variables that came from the file; variables set in the shell always win.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from flue.project import Project, load_project, resolve_source_root
from flue.redaction import scrub
from flue.server.serve import Listener, bind_error, is_loopback, shutdown_runtime
from flue.server.state import ServerState

WATCHED_DIRS = ("agents", "workflows", "skills", "channels", "plugins")
CONFIG_FILES = ("flue.yaml", "flue.yml")
DEBOUNCE_MS = 150
IGNORED_SUFFIXES = ("~", ".swp", ".swx", ".swo", ".swn", ".tmp", ".pyc", ".bak", ".orig")


def editor_temp_file(name: str) -> bool:
    """Files editors write next to the one being saved, never a reason to reload: vim's swap
    files and its ``4913`` write probe, backups (``x~``), emacs lock and autosave files
    (``.#x``, ``#x#``), and others' ``.tmp`` files."""
    return (name.endswith(IGNORED_SUFFIXES) or name.startswith(".#") or name == "4913"
            or (len(name) > 1 and name.startswith("#") and name.endswith("#")) or name == ".DS_Store")
DRAIN_GRACE_S = 60.0


def describe(project: Project) -> list[str]:
    """What discovery found, one line per kind (``(http)`` marks HTTP-exposed)."""

    def names(items: Iterable[Any], exposed: bool = False) -> str:
        out = [f"{i.name}{' (http)' if exposed and getattr(i, 'exposed', False) else ''}" for i in items]
        return ", ".join(out) or "(none)"

    project_plugins = [p for p in project.plugins if p.source != "builtin"]
    return [
        f"  agents:    {names(project.agents.values(), True)}",
        f"  workflows: {names(project.workflows.values(), True)}",
        f"  skills:    {names(project.skills.values())}",
        f"  channels:  {names(project.channels.values())}",
        f"  plugins:   {names(project_plugins)}",
    ]


def _all_diagnostics(project: Project) -> list[Any]:
    """The project's diagnostics, and "no agent or workflow files found" when there is nothing to serve."""
    return [*project.diagnostics, *(d for d in project.serving_errors if d not in project.diagnostics)]


def print_diagnostics(project: Project, out: TextIO) -> None:
    for d in _all_diagnostics(project):
        print("  " + d.render().replace("\n", "\n  "), file=out)


class EnvFile:
    """The ``.env`` values this process applied, so a reload can update or remove them."""

    def __init__(self, path: Path | None, explicit: bool):
        self.path = path
        self.explicit = explicit
        self._shell = set(os.environ)
        self._applied: set[str] = set()

    def load(self) -> None:
        from dotenv import dotenv_values

        if self.path is None or not self.path.is_file():
            if self.explicit:
                raise FileNotFoundError(f"--env file not found: {self.path}")
            values: dict[str, str | None] = {}
        else:
            values = dotenv_values(self.path)
        for key in self._applied - set(values):
            os.environ.pop(key, None)
        self._applied = set()
        for key, value in values.items():
            if key in self._shell or value is None:
                continue  # shell values win
            os.environ[key] = value
            self._applied.add(key)


class DevServer:
    def __init__(
        self,
        root: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        env_file: str | Path | None = None,
        out: TextIO | None = None,
    ):
        self.root = Path(root).resolve()
        self.host = host
        self.port = port
        self.out = out or sys.stderr
        self.env = EnvFile(Path(env_file).resolve() if env_file else self.root / ".env", explicit=env_file is not None)
        self.listener: Listener | None = None
        self.runtime: Any = None
        self.state: ServerState | None = None
        self.project: Project | None = None
        self._stop = asyncio.Event()

    def say(self, text: str) -> None:
        print(scrub(text), file=self.out, flush=True)  # diagnostics and errors may quote a secret

    # -- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        """Serve until :meth:`stop`; return 1 when the first load or the bind fails."""
        from flue.config import DEFAULT_DEV_PORT
        from flue.runtime.runtime import Runtime

        try:
            self.env.load()
        except FileNotFoundError as exc:
            self.say(f"flue dev: {exc}")
            return 1
        project = load_project(self.root)
        if project.serving_errors:
            self.say("flue dev: the project has errors; fix them and run flue dev again:")
            print_diagnostics(project, self.out)
            return 1
        for d in project.diagnostics:
            self.say(d.render())
        port = self.port if self.port is not None else (project.config.port or DEFAULT_DEV_PORT)
        access = logging.getLogger("flue.dev.access")
        self.listener = Listener(self.host, port, access_log=access)
        try:
            self.listener.bind()
        except OSError as exc:
            self.say(bind_error("flue dev", self.host, port, exc))
            return 1
        try:
            self.runtime = await Runtime.open(project, dev=True)
        except Exception as exc:
            self.say(f"flue dev: cannot open persistence: {exc}")
            await self.listener.stop()
            return 1
        self.project = project
        self.state = self._state(self.runtime)
        try:
            await self.listener.start(self._app(self.state), shutdown_timeout=2.0)
            self.say(f"flue dev: serving {self.root} (source root {project.source_root})")
            for line in describe(project):
                self.say(line)
            self.say(f"flue dev: listening on {self.listener.url}")
            if is_loopback(self.host) or project.config.admin is not None:
                self.say(f"flue dev: playground at {self.listener.url}/_flue/")
            watcher = asyncio.create_task(self._watch(), name="flue-dev-watch")
            await self._stop.wait()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        finally:
            await self._shutdown()
        return 0

    async def _shutdown(self) -> None:
        if self.listener is not None:
            await self.listener.stop()
        if self.state is not None:
            await shutdown_runtime(self.state, grace=2.0)

    def _state(self, runtime: Any) -> ServerState:
        # one set of in-flight runs per runtime, shared by the apps built over it
        runs = self.state.runs if self.state is not None and self.state.runtime is runtime else set()
        return ServerState(runtime, dev=True, runs=runs)

    def _app(self, state: ServerState) -> Any:
        from flue.server.app import make_app

        return make_app(state.runtime, dev=True, state=state, open_admin=is_loopback(self.host))

    # -- reloading ------------------------------------------------------------------------

    async def reload(self, changed: Iterable[str] = ()) -> bool:
        """Load the project again and serve it; False (and the old project keeps serving) on errors."""
        from flue.runtime.runtime import Runtime

        assert self.listener is not None and self.runtime is not None
        rel = sorted({self._rel(p) for p in changed})
        if rel:
            more = f" (+{len(rel) - 5} more)" if len(rel) > 5 else ""
            self.say(f"flue dev: changed: {', '.join(rel[:5])}{more}; reloading")
        try:
            self.env.load()
        except FileNotFoundError as exc:
            self.say(f"flue dev: {exc}; still serving the last good version")
            return False
        project = load_project(self.root)
        if project.serving_errors:
            self.say("flue dev: the project has errors; still serving the last good version:")
            print_diagnostics(project, self.out)
            if self.state is not None:  # the playground shows them (GET <admin>/project: loadErrors)
                self.state.load_errors = scrub([d.model_dump() for d in _all_diagnostics(project)])
            return False
        old_runtime, old_state = self.runtime, self.state
        assert old_state is not None
        new_runtime = old_runtime
        if project.config.persistence != old_runtime.project.config.persistence:
            try:
                new_runtime = await Runtime.open(project, dev=True)
            except Exception as exc:
                self.say(f"flue dev: cannot open the new persistence ({exc}); still serving the last good version")
                return False
        else:
            new_runtime.use_project(project)
        state = self._state(new_runtime)
        try:
            # a plugin's flue_app hook or an on_startup hook may fail: keep the old app then
            await self.listener.swap(self._app(state), retire_timeout=DRAIN_GRACE_S)
        except Exception as exc:
            self.say(f"flue dev: starting the app failed: {exc!r}; still serving the last good version")
            if new_runtime is not old_runtime:
                await new_runtime.close()
            else:
                new_runtime.use_project(self.project)
            return False
        self.state, self.runtime, self.project = state, new_runtime, project
        if new_runtime is not old_runtime:
            asyncio.get_running_loop().create_task(shutdown_runtime(old_state, grace=DRAIN_GRACE_S))
        for d in project.diagnostics:
            self.say(d.render())
        self.say("flue dev: reloaded")
        for line in describe(project):
            self.say(line)
        return True

    def _rel(self, path: str) -> str:
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return path

    # -- watching -------------------------------------------------------------------------

    def _watch_plan(self) -> tuple[list[Path], list[Path]]:
        """(directories watched recursively, directories watched flat)."""
        source = resolve_source_root(self.root)
        deep = [source / d for d in WATCHED_DIRS if (source / d).is_dir()]
        flat = {self.root, source}
        if self.env.path is not None and self.env.path.parent.is_dir():
            flat.add(self.env.path.parent)
        return deep, sorted(flat)

    def relevant(self, path: str) -> bool:
        p = Path(path)
        if editor_temp_file(p.name) or "__pycache__" in p.parts:
            return False
        if p in {self.root / n for n in CONFIG_FILES} or p == self.env.path:
            return True
        if p in (self.root / ".flue", self.root / "src"):
            return True  # a new (or removed) source root
        source = resolve_source_root(self.root)
        for d in WATCHED_DIRS:
            top = source / d
            if p == top or top in p.parents:
                return True
        return False

    async def _watch(self) -> None:
        while True:
            deep, flat = self._watch_plan()
            queue: asyncio.Queue[set[str]] = asyncio.Queue()
            stop = asyncio.Event()
            pumps = [asyncio.create_task(self._pump(flat, False, queue, stop))]
            if deep:
                pumps.append(asyncio.create_task(self._pump(deep, True, queue, stop)))
            try:
                while True:
                    changed = await queue.get()
                    await asyncio.sleep(DEBOUNCE_MS / 1000)  # merge what the other watcher saw
                    while not queue.empty():
                        changed |= queue.get_nowait()
                    await self.reload(changed)
                    if self._watch_plan() != (deep, flat):
                        break  # directories appeared or vanished: watch the new set
            finally:
                stop.set()
                _done, pending = await asyncio.wait(pumps, timeout=2.0)
                for task in pending:
                    task.cancel()

    async def _pump(self, paths: list[Path], recursive: bool, queue: asyncio.Queue[set[str]], stop: asyncio.Event) -> None:
        from watchfiles import awatch

        async for changes in awatch(
            *paths, recursive=recursive, debounce=DEBOUNCE_MS, step=50, stop_event=stop,
            watch_filter=lambda _change, path: self.relevant(path),
        ):
            await queue.put({path for _change, path in changes})
