"""A registered model name with a quote went into an MLflow filter string raw: the search failed or matched
something else. Real MLflow store on SQLite."""

from __future__ import annotations

import pytest

from alignops import tracking
from alignops.errors import ModelError


@pytest.mark.parametrize("name", ["it's-mine", 'say-"hi"', "plain' OR name LIKE '%"])
def test_quoted_names_find_exactly_their_versions(home, name: str) -> None:
    client = tracking.connect().MlflowClient()
    for registered in (name, "other"):
        client.create_registered_model(registered)
        client.create_model_version(registered, source="file:///nowhere")
    assert tracking.latest_uncompressed(name) == f"models:/{name}/1"
    found = client.search_model_versions(f"name={tracking.filter_value(name)}")
    assert [v.name for v in found] == [name]


def test_a_name_with_both_quotes_is_refused() -> None:
    with pytest.raises(ModelError, match="both"):
        tracking.filter_value("""a'b"c""")
