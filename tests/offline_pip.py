"""Install a `flue build` artifact's requirements with no network: a wheelhouse re-packed
from the distributions installed in the running environment, and an environment for
subprocesses whose package index and HTTP proxies are a loopback :class:`Tripwire`, so
any index or proxied HTTP request fails at once and is counted.

:func:`wheelhouse` turns each ``name==version`` line of a ``requirements.txt`` into a
wheel of the installed distribution (its ``.dist-info/RECORD`` says which files, its
``WHEEL`` which tags), so ``pip install --no-index --find-links <wheelhouse>`` installs
exactly the pinned versions or fails: nothing else is there to pick.
"""

from __future__ import annotations

import base64
import hashlib
import os
import posixpath
import socket
import threading
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name

# pip writes these at install time; a wheel does not carry them
INSTALL_ONLY = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


class Tripwire:
    """A loopback port that counts every connection and drops it: stands in for the package
    index and the proxies, so a request that would leave loopback fails at once and a
    test can assert none was even tried (a closed port would only refuse, unseen)."""

    def __init__(self) -> None:
        self.hits = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:  # closed
                return
            self.hits += 1
            conn.close()

    def close(self) -> None:
        self._sock.close()

    def env(self, **extra: str) -> dict[str, str]:
        """``os.environ`` without pip's configuration (no config files, no ``PIP_*``: no
        machine-wide index mirror or find-links), with the index and every HTTP proxy on
        this tripwire and no retries."""
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PIP_")}
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            env[var] = env[var.lower()] = self.url
        env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", PIP_CONFIG_FILE=os.devnull,
                   PIP_INDEX_URL=f"{self.url}/simple/", PIP_RETRIES="0", PIP_DEFAULT_TIMEOUT="5",
                   PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
        return env


def pins(requirements: Path) -> dict[str, str]:
    """{canonical name: version} of the ``name==version`` lines (bundled ``./wheels`` lines aside)."""
    found: dict[str, str] = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("./wheels/"):
            continue
        name, sep, version = line.partition("==")
        if not sep or any(c in version for c in ";@ "):
            raise ValueError(f"{requirements}: {line!r} is not a plain name==version pin")
        found[canonicalize_name(name)] = version
    return found


def _tags(wheel_text: str) -> str:
    """The compressed tag set (``py2.py3-none-any``) of a ``WHEEL`` file's ``Tag:`` lines."""
    tags = [line.split(":", 1)[1].strip().split("-") for line in wheel_text.splitlines() if line.startswith("Tag:")]
    if not tags:
        raise ValueError("WHEEL has no Tag: line")
    return "-".join(".".join(sorted({t[i] for t in tags})) for i in range(3))


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def repack(dist: metadata.Distribution, into: Path) -> Path:
    """A wheel of an installed distribution: the files its RECORD lists under site-packages
    (console scripts and other files outside it are left out: pip makes the scripts again
    from ``entry_points.txt``), bytecode caches left out, a fresh RECORD."""
    wheel_text = dist.read_text("WHEEL")
    if dist.files is None or wheel_text is None:
        raise ValueError(f"{dist.metadata['Name']} has no RECORD or WHEEL (not installed from a wheel); "
                         "cannot re-pack it")
    base = Path(dist.locate_file(""))
    info_dir = next(f.parts[0] for f in dist.files if f.parts[0].endswith(".dist-info"))
    stem = info_dir.removesuffix(".dist-info")  # "name-version", as pip expects it in the file name
    target = into / f"{stem}-{_tags(wheel_text)}.whl"
    record: list[str] = []
    # stored, not deflated: the files are read back once, by pip, on this machine
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zf:
        for file in dist.files:
            arc = posixpath.normpath(file.as_posix())
            if arc.startswith("../") or posixpath.isabs(arc) or "__pycache__" in file.parts:
                continue
            if file.parts[0] == info_dir and file.name in INSTALL_ONLY:
                continue
            data = (base / arc).read_bytes()
            zf.writestr(arc, data)
            record.append(f"{arc},{_digest(data)},{len(data)}")
        record.append(f"{info_dir}/RECORD,,")
        zf.writestr(f"{info_dir}/RECORD", "\n".join(record) + "\n")
    return target


def wheelhouse(requirements: Path, into: Path) -> dict[str, str]:
    """Re-pack every distribution pinned in ``requirements`` into ``into``; return the pins.

    Each pin must be exactly the version installed here (the build pins what it found
    installed); a mismatch or a missing distribution raises."""
    into.mkdir(parents=True, exist_ok=True)
    pinned = pins(requirements)
    for name, version in pinned.items():
        dist = metadata.distribution(name)
        if dist.version != version:
            raise AssertionError(f"requirements.txt pins {name}=={version}, but {dist.version} is installed")
        repack(dist, into)
    return pinned
