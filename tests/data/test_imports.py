"""`alignops data import` / `export`: every format and shape read alike, bad input refused by file, line and
field with nothing written, round trips import -> export -> import, the datasheet's account, a leak into a test
split refused, and a rebuild that replays the imports to the same data version."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alignops.cli import app
from alignops.config import DataConfig, PipelineConfig, load_config
from alignops.data import exports, imports, shapes, sources, versioning
from alignops.data.validation import DataValidationError
from alignops.stages import data
from tests.conftest import project_checkout

CHATS = [
    {"messages": [{"role": "user", "content": "How do I boil an egg?"},
                  {"role": "assistant", "content": "Put it in boiling water for eight minutes."}]},
    {"messages": [{"role": "system", "content": "You answer briefly."},
                  {"role": "user", "content": "What is the capital of France?"},
                  {"role": "assistant", "content": "Paris is the capital."},
                  {"role": "user", "content": "And of Italy?"},
                  {"role": "assistant", "content": "Rome is the capital of Italy."}]},
    {"messages": [{"role": "user", "content": "推荐一本关于历史的书。"},
                  {"role": "assistant", "content": "可以读《史记》，它记载了上古到汉代的历史。"}]},
]  # fmt: skip
PAIRS = [
    {"prompt": "Write a kind note to a neighbour.", "chosen": "Thank you for watering my plants last week!",
     "rejected": "Your dog is loud."},
    {"prompt": "Describe the sea in one sentence.", "chosen": "The sea rolls grey and silver under the wind.",
     "rejected": "Water."},
    {"prompt": "Give advice to a new student.", "chosen": "Ask questions early and keep a study schedule.",
     "rejected": "Do whatever you like, nothing matters at school."},
]  # fmt: skip
SHAPE_ROWS = {
    "sft": [{"prompt": "Name a primary colour.", "completion": "Red is a primary colour."},
            {"prompt": "Say something about winter.", "completion": "Winter days are short and cold."}],
    "rankings": PAIRS,
    "classification": [{"text": "A wonderful, moving film with great acting.", "label": "positive"},
                       {"text": "Dull plot and wooden dialogue throughout.", "label": "negative"}],
    "eval_prompts": [{"prompt": "Write a haiku about rain."}, {"prompt": "Explain what a noun is."}],
}  # fmt: skip
UNPAIRED = [
    {"prompt": "Write a greeting.", "completion": "Hello, lovely to see you!", "label": True},
    {"prompt": "Write a greeting.", "completion": "What do you want.", "label": False},
    {"prompt": "Write a greeting.", "completion": "Good morning, friend!", "label": True},
    {"prompt": "Only good ones here.", "completion": "A fine answer indeed.", "label": True},
]


def write(path: Path, rows: list[dict], fmt: str) -> Path:
    """One fixture file in a format the field uses."""
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "json":
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    elif fmt == "csv":
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        from datasets import Dataset

        Dataset.from_list(rows).save_to_disk(str(path))
    return path


def plan(path: Path, set_name: str, tmp_path: Path, **kwargs) -> imports.ImportPlan:
    return imports.plan_import(path, set_name, tmp_path / "no-data", DataConfig(), **kwargs)


def records_of(p: imports.ImportPlan) -> list[dict]:
    return sorted((r for rows in p.records.values() for r in rows), key=lambda r: json.dumps(r, sort_keys=True))


# --------------------------------------------------------------------------- formats and shapes (no build)


@pytest.mark.parametrize("set_name", list(SHAPE_ROWS))
def test_every_format_reads_to_the_same_records(tmp_path: Path, set_name: str) -> None:
    rows = SHAPE_ROWS[set_name]
    results = {}
    for fmt, suffix in (("jsonl", ".jsonl"), ("json", ".json"), ("csv", ".csv"), ("parquet", ".parquet"),
                        ("hf", "")):  # fmt: skip
        path = write(tmp_path / f"{set_name}-{fmt}{suffix}", rows, fmt)
        results[fmt] = plan(path, set_name, tmp_path, source="team")
    first = records_of(results["jsonl"])
    assert len(first) == len(rows)
    assert all(records_of(r) == first for r in results.values())
    assert {r.shape for r in results.values()} == {shapes.infer_shape(rows[0], set_name, None).name}


def test_messages_stay_messages_and_render_at_training(tmp_path: Path) -> None:
    from alignops.data.tokenizer import chat_messages, chat_template

    for fmt, suffix in (("jsonl", ".jsonl"), ("parquet", ".parquet"), ("hf", "")):
        p = plan(write(tmp_path / f"chats-{fmt}{suffix}", CHATS, fmt), "sft", tmp_path)
        assert p.shape == "messages"
        chats = {r["response"]: r for r in records_of(p)}
        multi = chats["Rome is the capital of Italy."]
        assert multi["prompt"] == "And of Italy?" and len(multi["messages"]) == 5  # kept, not flattened
    assert chat_messages(CHATS[0]["messages"]) == chat_template("How do I boil an egg?")
    rendered = chat_messages(multi["messages"])
    assert rendered == (
        "<|user|>\nYou answer briefly.\n\nWhat is the capital of France?<|assistant|>\nParis is the capital."
        "<|endoftext|><|user|>\nAnd of Italy?<|assistant|>\n"
    )


def test_unpaired_preferences_become_tied_rankings(tmp_path: Path) -> None:
    p = plan(write(tmp_path / "kto.jsonl", UNPAIRED, "jsonl"), "rankings", tmp_path)
    [ranking] = records_of(p)
    assert ranking["responses"][:2] == ["Hello, lovely to see you!", "Good morning, friend!"]
    assert ranking["ranking"] == [[0, 1], 2] and ranking["derived"] is True
    assert p.entry["dropped"] == {"unpaired: the prompt has no completion of the other label": 1}


def test_map_renames_fields(tmp_path: Path) -> None:
    rows = [{"question": "What is two plus two?", "answer": "Two plus two is four."}]
    path = write(tmp_path / "qa.csv", rows, "csv")
    with pytest.raises(imports.ImportRefused, match="unknown shape") as refused:
        plan(path, "sft", tmp_path)
    assert "prompt_completion" in str(refused.value) and '"question": "What is two plus two?"' in str(refused.value)
    p = plan(path, "sft", tmp_path, mapping=shapes.parse_mapping("prompt=question,response=answer"))
    assert records_of(p)[0]["response"] == "Two plus two is four."


BAD = {
    "missing field": ([{"prompt": "p1", "chosen": "a"}], "rankings", "line 1: field 'rejected': missing"),
    "extra field": ([{"prompt": "hi there", "completion": "hello", "score": 3}], "sft",
                    "line 1: field 'score': not part of"),
    "chosen == rejected": ([PAIRS[0], {**PAIRS[1], "rejected": PAIRS[1]["chosen"]}], "rankings",
                           "line 2: field 'rejected': equals 'chosen'"),
    "roles out of order": ([{"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "yo"}]}],
                           "sft", "line 1: field 'messages[0]'.role: 'assistant' out of order"),
    "label not allowed": ([{"text": "A fine film indeed.", "label": "meh"}], "classification",
                          "line 1: field 'label': 'meh' is not one of"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_bad_records_are_refused_by_line_and_field(tmp_path: Path, case: str) -> None:
    rows, set_name, expected = BAD[case]
    path = write(tmp_path / "bad.jsonl", rows, "jsonl")
    with pytest.raises(imports.ImportRefused, match="nothing was imported") as refused:
        plan(path, set_name, tmp_path)
    assert f"{path}:{expected}" in str(refused.value)


def test_bad_files_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(imports.ImportRefused, match="is empty"):
        plan(empty, "sft", tmp_path)
    latin = tmp_path / "latin1.jsonl"
    latin.write_bytes(b'{"prompt": "ok", "completion": "fine"}\n{"prompt": "caf\xe9", "completion": "x"}\n')
    with pytest.raises(imports.ImportRefused, match=r"latin1.jsonl:line 2: byte 0xe9 is not UTF-8"):
        plan(latin, "sft", tmp_path)
    huge = write(tmp_path / "huge.jsonl", [SHAPE_ROWS["sft"][0], {"prompt": "p", "completion": "x" * 10_000_000}],
                 "jsonl")  # fmt: skip
    with pytest.raises(imports.ImportRefused, match=r"huge.jsonl:line 2: the record is 10.0 MB"):
        plan(huge, "sft", tmp_path)
    huge_parquet = write(tmp_path / "huge.parquet", [{"prompt": "p", "completion": "x" * 10_000_000}], "parquet")
    with pytest.raises(imports.ImportRefused, match=r"huge.parquet:row 1: the record is 10.0 MB"):
        plan(huge_parquet, "sft", tmp_path)


# --------------------------------------------------------------------------- into a built project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    """A built tiny project, and a pristine copy of its data/ to start each test from."""
    root = tmp_path_factory.mktemp("import-project")
    with project_checkout(root) as overrides:
        cfg = load_config("tiny", overrides)
        data.build(cfg)
        shutil.copytree(cfg.data.data_dir, root / "pristine")
        yield cfg, root / "pristine", overrides


def fresh(project, name: str) -> PipelineConfig:
    """A config whose data_dir is a fresh copy of the built data (its own .dvc file next to it)."""
    cfg, pristine, _ = project
    target = Path(name)
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(pristine, target)
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"data_dir": target})})


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def imported(cfg: PipelineConfig, set_name: str, source: str) -> dict[str, list[dict]]:
    from alignops.data.validation import CONTRACTS

    return {s: [r for r in sources.read_jsonl(cfg.data.data_dir / set_name / f"{s}.jsonl") if r["source"] == source]
            for s in CONTRACTS[set_name].splits}  # fmt: skip


@pytest.mark.slow  # eight imports, each validating every set with GX: about 80 s on 2 busy cores
def test_round_trip_import_export_import(project, tmp_path: Path) -> None:
    first, second = fresh(project, "data-a"), fresh(project, "data-b")
    labels, prompts = SHAPE_ROWS["classification"], SHAPE_ROWS["eval_prompts"]
    cases = [("sft", write(tmp_path / "chats.jsonl", CHATS, "jsonl"), "hf"),
             ("rankings", write(tmp_path / "pairs.parquet", PAIRS, "parquet"), "parquet"),
             ("classification", write(tmp_path / "labels.csv", labels, "csv"), "jsonl"),
             ("eval_prompts", write(tmp_path / "prompts.json", prompts, "json"), "jsonl")]  # fmt: skip
    for set_name, path, fmt in cases:
        imports.import_file(first, path, set_name, source="team", track=False)  # versioning: tested below
        written = exports.export_set(first.data.data_dir, set_name, fmt, tmp_path / "out" / fmt, source="team")
        for split, out in written.items():
            if fmt == "hf":
                from datasets import load_from_disk

                part = tmp_path / f"{set_name}-{split}"
                load_from_disk(str(out))[split].save_to_disk(str(part))
                out = part
            if imported(first, set_name, "team")[split]:  # an empty split exports an empty file (hf: none)
                imports.import_file(second, out, set_name, split=split, track=False)
            else:
                assert fmt != "hf"
        assert imported(second, set_name, "team") == imported(first, set_name, "team"), set_name
        rows = {"sft": CHATS, "rankings": PAIRS}.get(set_name) or SHAPE_ROWS[set_name]
        assert sum(map(len, imported(first, set_name, "team").values())) == len(rows)


def test_datasheet_accounts_for_every_row(project, tmp_path: Path) -> None:
    cfg = fresh(project, "data-sheet")
    built_sft = sources.read_jsonl(cfg.data.data_dir / "sft" / "train.jsonl")[0]
    rows = [
        *SHAPE_ROWS["sft"],
        SHAPE_ROWS["sft"][0],  # the same pair twice in the file
        {"prompt": built_sft["prompt"], "completion": built_sft["response"]},  # already in the set
        {"prompt": "Скажи привет.", "completion": "Привет, как дела?"},  # not a language of the contracts
    ]
    path = write(tmp_path / "team.jsonl", rows, "jsonl")
    before = versioning.data_version(Path("data-sheet.dvc"))
    result = imports.import_file(cfg, path, "sft")
    assert result.data_version != before and result.data_version == versioning.data_version(Path("data-sheet.dvc"))
    sheet = json.loads((cfg.data.data_dir / "datasheet.json").read_text(encoding="utf-8"))
    [entry] = sheet["imports"]
    assert entry["file"] == "team.jsonl" and entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert entry["rows_read"] == 5 and sum(entry["rows_added"].values()) == 2
    assert entry["dropped"] == {"duplicate of a record in the file or already in the set": 2, "language not en/zh": 1}
    for split, n in sheet["counts"]["sft"].items():
        assert n == len(sources.read_jsonl(cfg.data.data_dir / "sft" / f"{split}.jsonl"))
    kept = cfg.data.data_dir / entry["kept_as"]
    assert kept.read_bytes() == path.read_bytes()
    assert entry["sha256"] in (cfg.data.data_dir / "datasheet.md").read_text(encoding="utf-8")


def test_a_test_prompt_imported_for_training_is_refused(project, tmp_path: Path) -> None:
    cfg = fresh(project, "data-leak")
    versioning.track(cfg.data.data_dir)
    before, version = tree_digest(cfg.data.data_dir), versioning.data_version(Path("data-leak.dvc"))
    held_out = sources.read_jsonl(cfg.data.data_dir / "eval_prompts" / "test.jsonl")[0]["prompt"]
    rows = [{"prompt": held_out, "completion": "An answer written by the team for training, long and new."}]
    with pytest.raises(DataValidationError, match="nothing was imported") as refused:
        imports.import_file(cfg, write(tmp_path / "leaky.jsonl", rows, "jsonl"), "sft", split="train")
    assert "cross-split leakage" in str(refused.value)
    assert tree_digest(cfg.data.data_dir) == before and versioning.data_version(Path("data-leak.dvc")) == version
    bad = write(tmp_path / "bad.jsonl", [{"prompt": "x", "chosen": "same", "rejected": "same"}], "jsonl")
    with pytest.raises(imports.ImportRefused):
        imports.import_file(cfg, bad, "rankings")
    assert tree_digest(cfg.data.data_dir) == before


def test_rebuild_replays_imports_to_the_same_version(project, tmp_path: Path) -> None:
    cfg = fresh(project, "data")  # the default data_dir: `alignops data build` writes here
    files = [str(write(tmp_path / "chats.jsonl", CHATS, "jsonl")), str(write(tmp_path / "pairs.parquet", PAIRS,
                                                                                "parquet"))]  # fmt: skip
    options = ["--source", "team", "--preset", "tiny", *[arg for o in project[2] for arg in ("--set", o)]]
    result = CliRunner().invoke(app, ["data", "import", *files, *options])  # the set each becomes: from its shape
    assert result.exit_code == 0, result.output
    assert "(messages, sha256" in result.output and "into sft" in result.output and "into rankings" in result.output
    after_import = versioning.data_version()
    rebuilt = data.build(cfg)
    assert rebuilt.data_version == after_import
    for set_name in ("sft", "rankings"):
        assert len([r for s in imported(cfg, set_name, "team").values() for r in s]) == 3

    out = tmp_path / "exported"
    exported = CliRunner().invoke(app, ["data", "export", "sft", "--format", "jsonl", "--out", str(out), *options])
    assert exported.exit_code == 0, exported.output
    rows = [json.loads(line) for split in ("train", "val", "test") for line in (out / "sft" / f"{split}.jsonl").open()]
    assert sorted(r["messages"][-1]["content"] for r in rows) == sorted(c["messages"][-1]["content"] for c in CHATS)

    refused = CliRunner().invoke(app, ["data", "import", files[0], "--as", "classification", *options])
    assert refused.exit_code == 2 and "unknown shape for --as classification" in refused.output
    assert versioning.data_version() == after_import


def test_mix_weights_keep_a_share_of_a_source(tmp_path: Path) -> None:
    rows = [
        {"prompt": f"Question number {i} about cooking?", "completion": f"Answer {i}: simmer it."} for i in range(40)
    ]
    path = write(tmp_path / "many.jsonl", rows, "jsonl")
    kept = {}
    for mix in ("", "team=0.5", "team=0", "other=0"):
        p = imports.plan_import(path, "sft", tmp_path / "none", DataConfig(mix=mix), source="team", split="train")
        kept[mix] = len(p.records["train"])
    assert kept[""] == kept["other=0"] == 40 and kept["team=0"] == 0 and 10 <= kept["team=0.5"] <= 30
    with pytest.raises(ValueError, match="mix"):
        DataConfig(mix="team=2")


def test_a_set_without_a_trl_shape_is_imported_in_its_contract_fields(tmp_path: Path, monkeypatch) -> None:
    # the NER set's contract is another issue's; a set of that kind, registered for this test only
    from alignops.data.validation import CONTRACTS, SetContract

    contract = SetContract(splits=("train", "val", "test"), columns={"tokens": "list", "tags": "list", "source": "str"})
    monkeypatch.setitem(CONTRACTS, "ner", contract)
    rows = [{"tokens": ["Ada", "lives", "in", "London"], "tags": ["B-PER", "O", "O", "B-LOC"]}]
    p = plan(write(tmp_path / "ner.parquet", rows, "parquet"), "ner", tmp_path, source="team")
    assert p.shape == "ner_contract" and records_of(p) == [{**rows[0], "source": "team"}]
    with pytest.raises(imports.ImportRefused, match="field 'tags': missing"):
        plan(write(tmp_path / "bad.jsonl", [{"tokens": ["x"]}], "jsonl"), "ner", tmp_path)
