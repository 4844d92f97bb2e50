"""The model registry: registering model folders with their lineage, resolving models:/ URIs (versions,
`latest`, aliases) to exact versions and local folders, version and model tags, aliases (`champion`,
`challenger`), compressed versions and fetched/imported bases.

    uri, version = tracking.register_model(folder, "alignops-sft", lineage, parent_uri="models:/alignops-base/2")
    tracking.version_uri("models:/alignops-sft@champion")      # models:/alignops-sft/3
    tracking.resolve_model("models:/alignops-sft/latest")      # the local folder
"""

from __future__ import annotations

from pathlib import Path

from alignops.errors import ModelError
from alignops.tracking.backend import connect, experiment_id, filter_value
from alignops.tracking.refs import ModelRef
from alignops.tracking.serving import SERVING_PARAMS
from alignops.tracking.tags import (
    BASE_MODEL_TYPE_TAG,
    COMPRESSION_TAG,
    PARENT_MODEL_TAG,
    RUN_ID_TAG,
    STAGE_TAG,
)

# Bases fetched or imported (alignops/base_models.py): one registered model per model, never shared by two
# architectures, so a preset's `models:/<prefix>-base/latest` cannot silently switch families.
BASES_EXPERIMENT = "alignops-bases"  # where the registering runs of fetched/imported bases are recorded

# The models-from-code file MLflow runs when it loads a registered model (see serving.set_served_model)
SERVED_MODEL_FILE = Path(__file__).resolve().parent.parent / "served_model.py"


def register_model(
    model_dir: Path, registered_name: str, lineage: dict[str, str], parent_uri: str | None = None
) -> tuple[str, str]:
    """Log model_dir as an MLflow pyfunc model in the active run and register it; returns (URI, version).

    The version carries its lineage as tags: data version, tokenizer, parent model, config hash, git commit."""
    mlflow = connect()
    from mlflow.models import ModelSignature, infer_signature

    # the default response length leaves at least half of the model's context to the prompt
    from alignops.artifacts import context_length

    params = {**SERVING_PARAMS, "max_new_tokens": min(SERVING_PARAMS["max_new_tokens"], context_length(model_dir) // 2)}
    inferred = infer_signature(["a prompt"], ["a completion"], params=params)
    # No input schema: MLflow would turn [5, null, {}] into the strings "5", "None", "{}" before predict sees
    # them; served_input checks the inputs instead, and the params schema still types the decoding params.
    signature = ModelSignature(inputs=None, outputs=inferred.outputs, params=inferred.params)
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(SERVED_MODEL_FILE),  # models-from-code, see serving.set_served_model
        artifacts={"model": str(model_dir)},
        signature=signature,
        # saved as serving_input_example.json (a request to copy), and MLflow serves it once while logging:
        # a version that cannot be served is caught at registration (a fraction of a second on the tiny preset)
        input_example=(["Write a tweet."], {"max_new_tokens": 8}),
        pip_requirements=["alignops", "torch==2.13.0", "tokenizers", "safetensors"],  # inference costs 11 s
        registered_model_name=registered_name,
    )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    tags = {**lineage, PARENT_MODEL_TAG: parent_uri or "none", RUN_ID_TAG: info.run_id}
    for key, value in tags.items():
        client.set_model_version_tag(registered_name, version, key, value)
    return ModelRef.of(registered_name, version).uri, version


def pin_uri(uri: str) -> str:
    """models:/name/latest -> models:/name/<newest trained version>, so lineage names an exact version.
    Compressed versions (alignops compress registers them beside their original) are derivatives, not the
    newest training result: `latest` skips them; name them by version or alias. Other URIs unchanged."""
    if not (ModelRef.is_registry_uri(uri) and uri.endswith("/latest")):
        return uri
    name = ModelRef.parse(uri).name
    found = latest_uncompressed(name)
    if found is None:
        raise FileNotFoundError(f"No registered versions of {name!r}: run the stage that makes it first.")
    return found


def resolve_model(uri: str, dst: Path | None = None) -> Path:
    """The local folder of a model URI (models:/name/version, models:/name@alias, models:/name/latest,
    runs:/...), downloaded from the tracking server's artifact store; or a local folder as it is."""
    if Path(uri).is_dir():
        return Path(uri)
    if ":/" not in uri:  # no scheme (models:/, runs:/, s3://...): meant as a folder, and there is none
        raise FileNotFoundError(
            f"{uri}: no such model folder. Pass a model folder (one holding alignops.json) or a registry URI "
            "(models:/<name>/<version>, /latest or @<alias>)."
        )
    if ModelRef.is_registry_uri(uri):
        ModelRef.parse(uri)  # a malformed models:/ URI is named as such, not as an artifact MLflow lacks
    mlflow = connect()
    uri = pin_uri(uri)
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst) if dst else None))
    except mlflow.exceptions.MlflowException as exc:
        raise FileNotFoundError(f"Cannot resolve model {uri!r}: {exc.message}") from exc
    from alignops.artifacts import META_FILE

    found = next((p.parent for p in sorted(local.rglob(META_FILE))), None)
    if found is None:
        raise FileNotFoundError(f"{uri} holds no alignops model folder (no {META_FILE}).")
    return found


def exact_version(uri: str) -> ModelRef:
    """The registered version a models:/ URI names, `latest` and aliases resolved."""
    ref = ModelRef.parse(uri)
    if ref.is_latest:
        return ModelRef.parse(pin_uri(uri))
    if ref.alias is None:
        return ref
    mlflow = connect()
    try:
        found = mlflow.MlflowClient().get_model_version_by_alias(ref.name, ref.alias)
    except mlflow.exceptions.MlflowException as exc:
        raise FileNotFoundError(f"{uri}: no version of {ref.name!r} has the alias {ref.alias!r}.") from exc
    return ModelRef.of(ref.name, found.version)


def version_uri(uri: str) -> str:
    """The exact version a registry URI names: latest and aliases resolved (models:/name@champion ->
    models:/name/3); other URIs (runs:/, folders) unchanged. FileNotFoundError when nothing is registered."""
    return exact_version(uri).uri if ModelRef.is_registry_uri(uri) else uri


def alias_uri(name: str, alias: str) -> str | None:
    """models:/<name>/<version> of the version holding `alias`, or None when no version holds it."""
    try:
        return version_uri(ModelRef(name, alias=alias).uri)
    except FileNotFoundError:
        return None


def model_version_tags(uri: str) -> dict[str, str]:
    """The tags of a registered version (lineage, alignops.run_id of the run that made it, evaluation)."""
    ref = exact_version(uri)
    mlflow = connect()
    try:
        return dict(mlflow.MlflowClient().get_model_version(ref.name, ref.version).tags)
    except mlflow.exceptions.MlflowException as exc:
        raise FileNotFoundError(f"{uri} is not a registered model version: {exc.message}") from exc


def set_model_version_tags(uri: str, tags: dict[str, str]) -> None:
    ref = exact_version(uri)
    client = connect().MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(ref.name, ref.version, key, value)


def model_version_exists(uri: str) -> bool:
    """Whether models:/<name>/<version> (or @alias) names a registered version."""
    try:
        model_version_tags(uri)
    except FileNotFoundError:
        return False
    return True


def set_alias(uri: str, alias: str) -> None:
    """Point `alias` at the version `uri` names; MLflow moves it off whichever version held it."""
    ref = exact_version(uri)
    connect().MlflowClient().set_registered_model_alias(ref.name, alias, ref.version)


def delete_alias(name: str, alias: str) -> None:
    """Remove `alias` from registered model `name`; nothing happens when no version holds it."""
    if alias_uri(name, alias) is not None:
        connect().MlflowClient().delete_registered_model_alias(name, alias)


def registered_model_tags(name: str) -> dict[str, str]:
    """The tags of a registered model (not of one version): e.g. its champion history."""
    mlflow = connect()
    try:
        return dict(mlflow.MlflowClient().get_registered_model(name).tags)
    except mlflow.exceptions.MlflowException as exc:
        raise FileNotFoundError(f"No registered model {name!r}: {exc.message}") from exc


def set_registered_model_tags(name: str, tags: dict[str, str]) -> None:
    client = connect().MlflowClient()
    for key, value in tags.items():
        client.set_registered_model_tag(name, key, value)


def latest_uncompressed(name: str) -> str | None:
    """models:/<name>/<version> of the newest version of `name` without the compression tag (alignops compress
    registers int8, pruned and distilled versions beside the original); None when there is none (or no
    registered model `name`)."""
    versions = connect().MlflowClient().search_model_versions(f"name={filter_value(name)}")
    plain = [int(v.version) for v in versions if COMPRESSION_TAG not in (v.tags or {})]
    return ModelRef.of(name, max(plain)).uri if plain else None


def find_model_version(name: str, tag: str, value: str) -> str | None:
    """The newest version of registered model `name` whose tag `tag` is `value`, as models:/name/version."""
    versions = connect().MlflowClient().search_model_versions(f"name={filter_value(name)}")
    for v in sorted(versions, key=lambda v: int(v.version), reverse=True):
        if v.tags.get(tag) == value:
            return ModelRef.of(name, v.version).uri
    return None


def register_base(model_dir: Path, registered_name: str, lineage: dict[str, str], model_type: str) -> tuple[str, str]:
    """Register a base model folder as a new version of `registered_name`; returns (URI, version).
    Refused, before anything is written, when that name already holds another architecture."""
    mlflow = connect()
    try:
        held = registered_model_tags(registered_name).get(BASE_MODEL_TYPE_TAG)
    except FileNotFoundError:
        held = None
    if held is not None and held != model_type:
        raise ModelError(
            f"the registered model {registered_name!r} holds {held!r} models, this one is {model_type!r}: a "
            f"preset reading models:/{registered_name}/latest would silently switch architecture"
        )
    # nested: under the pipeline run in its `base` step; top-level alone (`alignops model import`)
    with mlflow.start_run(
        experiment_id=experiment_id(BASES_EXPERIMENT), run_name=f"base-{registered_name}", nested=True
    ):
        mlflow.set_tags({STAGE_TAG: "base", **lineage})
        uri, version = register_model(model_dir, registered_name, lineage)
    set_registered_model_tags(registered_name, {BASE_MODEL_TYPE_TAG: model_type})
    return uri, version
