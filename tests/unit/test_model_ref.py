"""alignops.tracking.ModelRef: the one parser of models:/ URIs, by MLflow's rules; and the tag keys' one home."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from alignops import tracking
from alignops.errors import ModelError
from alignops.tracking import ModelRef, tags


@pytest.mark.parametrize(
    ("uri", "name", "version", "alias"),
    [
        ("models:/alignops-sft/3", "alignops-sft", "3", None),
        ("models:/alignops-sft/latest", "alignops-sft", "latest", None),
        ("models:/alignops-policy@champion", "alignops-policy", None, "champion"),
        ("models:/a@b@challenger", "a@b", None, "challenger"),  # MLflow splits at the last @ too
    ],
)
def test_parse_reads_versions_latest_and_aliases(uri: str, name: str, version: str | None, alias: str | None) -> None:
    ref = ModelRef.parse(uri)
    assert (ref.name, ref.version, ref.alias) == (name, version, alias)
    assert ref.uri == uri  # parse and uri round-trip
    assert ref.is_latest == (version == "latest")


@pytest.mark.parametrize(
    "uri",
    ["runs:/abc/model", "/tmp/model", "models:/", "models:/name", "models:/name/", "models:/a/b/3", "models:/@x",
     "models:/name@", "models:/name/Production", "models:/name/3@x"],
)  # fmt: skip
def test_parse_refuses_what_names_no_registered_version(uri: str) -> None:
    with pytest.raises(ModelError, match="models:/<name>/<version>"):
        ModelRef.parse(uri)


def test_of_builds_the_exact_version_uri() -> None:
    assert ModelRef.of("alignops-sft", 7).uri == "models:/alignops-sft/7"
    assert str(ModelRef("alignops-policy", alias="champion")) == "models:/alignops-policy@champion"


def test_uris_that_are_not_registry_uris_pass_through_version_uri() -> None:
    # folders and run URIs are resolved by MLflow or the file system, never parsed as models:/ URIs
    assert tracking.version_uri("runs:/abc/model") == "runs:/abc/model"
    assert tracking.pin_uri("/tmp/some/folder") == "/tmp/some/folder"


def test_every_tag_key_is_unique_and_namespaced() -> None:
    keys = {name: value for name, value in vars(tags).items() if name.endswith("_TAG")}
    assert len(keys) >= 30
    assert all(value.startswith(tags.PREFIX) for value in keys.values())
    assert len(set(keys.values())) == len(keys), "two constants name the same tag"


def test_the_tracking_package_writes_no_tag_key_literally() -> None:
    # a key spelled out beside its constant would be a second home of the contract
    package = Path(tracking.__file__).parent
    for path in package.glob("*.py"):
        if path.name == "tags.py":
            continue
        literals = re.findall(r"[\"']alignops\.[a-z_.]+[\"']", path.read_text(encoding="utf-8"))
        assert literals == [], (path.name, literals)
