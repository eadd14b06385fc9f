"""The configuration's schema (`workflow/schemas/config.schema.yaml`, shipped inside the package
as `segsweep/schemas/`): the one place where every key and its default are written down. A stage
run with part of a section (a hand-written `--config-json`, a run's hyperparameters) fills in
the rest from here (`complete`), so no module repeats a default.
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from typing import Any

import yaml


@functools.cache
def schema() -> dict[str, Any]:
    """The whole config schema (JSON schema as YAML)."""
    text = resources.files("segsweep").joinpath("schemas/config.schema.yaml").read_text()
    return yaml.safe_load(text)


def section(*keys: str) -> dict[str, Any]:
    """The schema of one section, e.g. `section("train")` (one run's hyperparameters) or
    `section("preprocess", "n4")`."""
    found = schema()
    for key in keys:
        found = found["properties"][key]
    return found


def defaults(*keys: str) -> dict[str, Any]:
    """Every key of a section with its default value, in the schema's order."""
    properties = section(*keys)["properties"]
    return {name: copy.deepcopy(spec["default"]) for name, spec in properties.items()}


def complete(values: dict[str, Any], *keys: str) -> dict[str, Any]:
    """`values` of the section `keys` with every key it leaves out at its default (a copy);
    keys the schema does not know are kept, for the stage to reject with a clear message."""
    return {**defaults(*keys), **values}
