"""`ModelRef`: the one parser of models:/ URIs, by MLflow's own rules (models:/<name>/<version>,
models:/<name>/latest, models:/<name>@<alias>; a name never holds a "/"). Pure: no MLflow import.

    ref = ModelRef.parse("models:/alignops-policy@champion")   # ModelRef("alignops-policy", None, "champion")
    ModelRef.parse("models:/alignops-sft/3").version            # "3"
    ModelRef.is_registry_uri("runs:/abc/model")                  # False: folders and run URIs are not parsed
"""

from __future__ import annotations

from dataclasses import dataclass

from alignops.errors import ModelError

SCHEME = "models:/"
LATEST = "latest"


@dataclass(frozen=True)
class ModelRef:
    """A registered model and which of its versions: an exact `version`, LATEST, or the holder of `alias`."""

    name: str
    version: str | None = None  # digits or LATEST; None when `alias` names the version
    alias: str | None = None

    @staticmethod
    def is_registry_uri(uri: str) -> bool:
        return uri.startswith(SCHEME)

    @classmethod
    def parse(cls, uri: str) -> ModelRef:
        """models:/name/<version|latest> or models:/name@alias; ModelError (a ValueError) for anything else."""
        if not cls.is_registry_uri(uri):
            raise ModelError(f"{uri!r} is not a registry URI: use models:/<name>/<version> or models:/<name>@<alias>.")
        parts = uri[len(SCHEME) :].split("/")
        if len(parts) == 2 and parts[0] and (parts[1].isdigit() or parts[1] == LATEST):
            return cls(parts[0], version=parts[1])
        if len(parts) == 1 and "@" in parts[0]:
            name, alias = parts[0].rsplit("@", 1)
            if name and alias:
                return cls(name, alias=alias)
        raise ModelError(
            f"{uri!r} names no registered version: use models:/<name>/<version>, models:/<name>/latest or "
            "models:/<name>@<alias> (the MLflow UI lists the names, versions and aliases)."
        )

    @classmethod
    def of(cls, name: str, version: str | int) -> ModelRef:
        return cls(name, version=str(version))

    @property
    def is_latest(self) -> bool:
        return self.version == LATEST

    @property
    def uri(self) -> str:
        return f"{SCHEME}{self.name}@{self.alias}" if self.alias is not None else f"{SCHEME}{self.name}/{self.version}"

    def __str__(self) -> str:
        return self.uri
