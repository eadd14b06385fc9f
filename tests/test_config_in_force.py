"""The config is validated once and never changed after: what the data decides (the dataset's or
the synthetic cohort's classes and channels, a MONAI datalist's folds) travels beside it, in the
config in force that the stages are handed (common.smk's IN_FORCE).

Each test parses the real Snakefile (`snakemake --list-rules`: nothing is planned or run) through
a wrapper Snakefile that includes it, records the config right after the Snakefile validates it
and again once every rule file is parsed, and prints both with what three rules are handed.
"""

from __future__ import annotations

import json
from pathlib import Path

from public_layouts import CHANNELS, CLASSES, build_datalist
from runs import REPO, configure, snakemake
from tiny import TINY_CONFIG, TINY_SWEEP

from segsweep.data.cohort import LABELS as COHORT_LABELS

WRAPPER = """
import copy as _copy
import json as _json
import sys as _sys

import snakemake.utils as _utils

_validate, _validated = _utils.validate, []


def _recording(data, schema, *args, **kwargs):
    # the schema's path resolves against the Snakefile being parsed, as in a direct call
    result = _validate(data, schema, *args, **kwargs)
    if data is config and not _validated:
        _validated.append(_copy.deepcopy(data))
    return result


_utils.validate = _recording


include: {snakefile!r}


_utils.validate = _validate
_rules = ("split", "normalisation", "report")
_handed = {{name: workflow.get_rule(name).params.cfg for name in _rules}}
_seen = {{"validated": _validated[0], "parsed": config, "handed": _handed, "runs": len(RUNS)}}
_sys.stderr.write("SEEN " + _json.dumps(_seen) + "\\n")
"""


def _seen(workdir: Path) -> dict:
    """What the wrapper records of parsing the Snakefile in `workdir` with its config.yaml."""
    wrapper = workdir / "Wrapper.smk"
    wrapper.write_text(WRAPPER.format(snakefile=str(REPO / "Snakefile")))
    result = snakemake(workdir, "--list-rules", snakefile=wrapper, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("SEEN ")]
    return json.loads(line.removeprefix("SEEN "))


def test_the_synthetic_cohorts_classes_leave_the_config_as_validated(tmp_path):
    configure(tmp_path, TINY_CONFIG, TINY_SWEEP)
    seen = _seen(tmp_path)
    assert seen["validated"]["data"]["labels"] is None
    assert seen["parsed"] == seen["validated"]
    assert seen["handed"]["report"]["data"]["labels"] == COHORT_LABELS


def test_a_datalists_classes_channels_and_folds_leave_the_config_as_validated(tmp_path):
    """Cross-validation asked for with 2 folds; the datalist brings 3, which are the folds."""
    datalist = build_datalist(tmp_path / "data", folds=3)
    config = {"data": {"source": "manifest", "manifest": str(datalist)}, "split": {"folds": 2}}
    configure(tmp_path / "work", config, {"grids": {"one": {"labels": ["separate"]}}})
    seen = _seen(tmp_path / "work")
    validated = seen["validated"]
    assert (validated["data"]["labels"], validated["data"]["channels"]) == (None, None)
    assert validated["split"]["folds"] == 2
    assert seen["parsed"] == validated
    handed = seen["handed"]
    assert json.loads(handed["split"])["folds"] == 3 and seen["runs"] == 3
    assert handed["normalisation"]["channels"] == CHANNELS
    assert handed["report"]["data"]["labels"] == CLASSES
    assert handed["report"]["split"]["folds"] == 3
