"""The results layout has one owner: `segsweep.layout` spells every path under results/, logs/
and benchmarks/; no other module of the package, and no rule, builds one."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from segsweep import layout

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "scripts" / "segsweep"
ROOTS = re.compile(r"^(results|logs|benchmarks)/")


def test_patterns_keep_or_fill_their_wildcards() -> None:
    assert layout.path(layout.SELECTION) == "results/runs/{run}/selection.json"
    assert layout.path(layout.SELECTION, run="r1") == "results/runs/r1/selection.json"
    assert layout.path(layout.TABLE, name="pairs") == "results/tables/pairs.csv"
    assert layout.log("n4/{subject}") == "logs/n4/{subject}.log"
    assert layout.benchmark("train/{run}") == "benchmarks/train/{run}.tsv"


def test_an_outer_fold_moves_every_results_folder_but_the_shared_ones() -> None:
    assert layout.outer(layout.CROP_PLAN, "1") == "results/outer/1/crop/plan.json"
    assert layout.outer(layout.log("n4/s"), "0") == "logs/outer/0/n4/s.log"
    assert layout.outer(layout.benchmark("train/r"), "2") == "benchmarks/outer/2/train/r.tsv"
    prefixes = layout.outer_prefixes("0")
    moved = {
        value
        for name, value in vars(layout).items()
        if name.isupper()
        and isinstance(value, str)
        and value.startswith("results/")
        and value.count("/") > 1  # files and their folders' contents, not a bare folder
    }
    for pattern in moved:
        shared = any(pattern.startswith(f"results/{f}/") for f in layout.SHARED_FOLDERS)
        matched = [p for p in prefixes if pattern.startswith(p)]
        assert len(matched) == (0 if shared else 1), pattern  # one prefix: never ambiguous


def test_under_relocates_a_results_folder_or_a_run_folder(tmp_path: Path) -> None:
    assert layout.under(tmp_path, layout.CROP_IMAGE, subject="s") == (
        tmp_path / "crop" / "s" / "image.nii.gz"
    )
    run = tmp_path / "my-run"
    assert layout.under(run, layout.RUN_INDEX, base=layout.RUN_DIR) == (
        run / "checkpoints" / "index.json"
    )


def _code_strings(tree: ast.AST) -> list[str]:
    """String constants of code: not docstrings, not argparse help or descriptions."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant):
                skipped.add(id(body[0].value))
        if isinstance(node, ast.keyword) and node.arg in {"help", "description"}:
            skipped |= {id(n) for n in ast.walk(node.value)}
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in skipped
    ]


def test_only_the_layout_module_spells_a_results_path() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "layout.py" or "bench" in path.parts:  # bench/dag: a bare Snakefile
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found += [f"{path.relative_to(REPO)}: {s!r}" for s in _code_strings(tree) if ROOTS.match(s)]
    assert not found, found


def test_the_rules_take_their_paths_from_the_layout() -> None:
    files = [REPO / "Snakefile", *sorted((REPO / "workflow").rglob("*.smk"))]
    files += sorted((REPO / "workflow" / "scripts").glob("*.py"))
    spelled = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in files
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"""["'](results|logs|benchmarks)/""", line)
    ]
    assert not spelled, spelled
