"""The one adapter to DVC: record the data version in data.dvc, push and pull it, report its status.

The data version is the md5 DVC computes over the data folder (outs[0].md5 in data.dvc, ending in .dir).
Reading it needs no DVC import; everything else runs the `dvc` command line of this interpreter, the
stable interface of DVC. The remote is ALIGNOPS_DVC_REMOTE (any DVC URL: a folder, s3://...), default the
folder ALIGNOPS_HOME/dvc-remote, written to .dvc/config.local so no machine path lands in git.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from alignops import settings
from alignops.errors import DataError

DVC_FILE = Path("data.dvc")
REMOTE_NAME = "alignops"


class VersioningError(DataError, RuntimeError):
    """A DVC command failed; the message carries DVC's own words and what to do."""


def data_version(dvc_file: Path = DVC_FILE) -> str | None:
    """The md5 recorded in data.dvc, or None when the file is absent."""
    if not dvc_file.is_file():
        return None
    meta = yaml.safe_load(dvc_file.read_text(encoding="utf-8")) or {}
    outs = meta.get("outs") or [{}]
    return outs[0].get("md5")


def read_version(data_dir: Path) -> str | None:
    """The DVC md5 of the folder a stage actually reads (None when it does not exist), computed from its bytes
    the way DVC does (md5 of the sorted {md5, relpath} list, suffix .dir): equal to data.dvc's when data/ is
    what data.dvc records, different when data_dir points elsewhere or the files were changed after the build.
    Records and resume keys use it, so that they never name data the run did not read."""
    import hashlib

    root = Path(data_dir)
    if not root.is_dir():
        return None
    entries = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest = hashlib.md5(usedforsecurity=False)
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        entries.append({"md5": digest.hexdigest(), "relpath": path.relative_to(root).as_posix()})
    entries.sort(key=lambda e: e["relpath"])
    listing = json.dumps(entries, sort_keys=True).encode("utf-8")
    return hashlib.md5(listing, usedforsecurity=False).hexdigest() + ".dir"


def remote_url() -> str:
    return os.environ.get("ALIGNOPS_DVC_REMOTE") or str(settings.home() / "dvc-remote")


def _dvc(*args: str) -> str:
    settings.apply_offline_env()
    if not Path(".dvc").is_dir():
        raise VersioningError(
            f"No DVC repository in {Path.cwd()}. Run alignops from the repository root (where data.dvc is), "
            "or `dvc init` a new one."
        )
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise VersioningError(f"`dvc {' '.join(args)}` failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def track(data_dir: Path) -> str:
    """Record data_dir's current content in its .dvc file and the local cache; returns the new version."""
    _dvc("add", "--quiet", str(data_dir))
    version = data_version(data_dir.with_name(data_dir.name + ".dvc"))
    if version is None:
        raise VersioningError(f"`dvc add {data_dir}` wrote no version. Check that {data_dir} is a folder.")
    return version


def _configure_remote() -> None:
    _dvc("remote", "add", "--local", "--force", "--default", REMOTE_NAME, remote_url())


def push(target: Path = DVC_FILE) -> None:
    """Upload the version in `target` to the remote."""
    _configure_remote()
    _dvc("push", "--quiet", str(target))


def pull(target: Path = DVC_FILE) -> None:
    """Fetch the version in `target` from the remote into the work tree."""
    _configure_remote()
    _dvc("pull", "--quiet", str(target))


@dataclass(frozen=True)
class DataStatus:
    version: str | None  # md5 recorded in data.dvc
    workspace_matches: bool  # data/ holds exactly that version
    in_remote: bool | None  # the remote has it (None: not asked)
    details: str


def status(target: Path = DVC_FILE, check_remote: bool = False) -> DataStatus:
    """Compare data/ with data.dvc (and, if asked, with the remote)."""
    version = data_version(target)
    if version is None:
        return DataStatus(None, False, None, f"{target} not found: run `alignops data build`.")
    local = json.loads(_dvc("status", "--json", str(target)) or "{}")
    in_remote = None
    if check_remote:
        _configure_remote()
        remote = json.loads(_dvc("status", "--cloud", "--json", str(target)) or "{}")
        in_remote = not remote
    details = "data/ matches data.dvc" if not local else f"data/ differs from data.dvc: {json.dumps(local)}"
    return DataStatus(version, not local, in_remote, details)
