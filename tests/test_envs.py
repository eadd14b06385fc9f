"""Conda environments: every env file parses, pins its packages, and holds every third-party
package that the stages its rules run import (conda cannot resolve here, so this is the check)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

from segsweep.__main__ import STAGES

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "scripts" / "segsweep"

# import name → conda package name, where they differ
CONDA_NAMES = {"SimpleITK": "simpleitk", "yaml": "pyyaml", "torch": "pytorch", "PIL": "pillow"}
# imported by our modules only through another listed package (seaborn brings matplotlib etc.)
PROVIDED_BY = {"matplotlib": {"seaborn"}, "PIL": {"matplotlib", "seaborn"}}


def env_packages(path: Path) -> dict[str, str]:
    """Package name → pinned version of one env file."""
    env = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert set(env) <= {"name", "channels", "dependencies"}, path
    packages = {}
    for spec in env["dependencies"]:
        assert isinstance(spec, str), f"{path.name}: pip sections are not used"
        name, _, version = spec.partition("=")
        assert version, f"{path.name}: {name} is not pinned"
        packages[name.lower()] = version
    return packages


def module_path(module: str) -> Path:
    """The file of a segsweep module, or of a stage's `module:function`."""
    path = PACKAGE.joinpath(*module.partition(":")[0].split(".")[1:])
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


# The task seam loads a task's stage when that stage is called (its functions import it): the
# seam's own imports are followed, those inside its functions only for the function a rule runs.
SEAM = "segsweep.tasks"


def imported_names(tree: ast.AST, into_functions: bool) -> list[str]:
    """The modules a module's (or one function's) import statements name, with the modules
    that `from segsweep.x import module` names; inside nested functions only if asked."""
    names = []
    stack = list(ast.iter_child_nodes(tree))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not into_functions:
            continue
        stack.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
            if node.module.split(".")[0] == "segsweep":  # `from segsweep.x import module`
                names += [
                    f"{node.module}.{alias.name}"
                    for alias in node.names
                    if module_path(f"{node.module}.{alias.name}").is_file()
                ]
    return names


def module_imports(module: str | Path, seen: set[str] | None = None) -> set[str]:
    """Third-party imports of a segsweep module (or a rule's script file, or a stage's
    `module:function`) and of the segsweep modules it imports, at any depth (the seam's
    function-level imports only in the function named)."""
    seen = set() if seen is None else seen
    if str(module) in seen:
        return set()
    seen.add(str(module))
    path = module if isinstance(module, Path) else module_path(module)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    seam = isinstance(module, str) and module.startswith(SEAM)
    names = imported_names(tree, into_functions=not seam)
    function = module.partition(":")[2] if isinstance(module, str) else ""
    if function:
        (body,) = [n for n in tree.body if getattr(n, "name", None) == function]
        names += imported_names(body, into_functions=True)
    third_party: set[str] = set()
    for name in names:
        top = name.split(".")[0]
        if top == "segsweep":
            third_party |= module_imports(name, seen)
        elif top not in sys.stdlib_module_names and top != "__future__":
            third_party.add(top)
    return third_party


def rules_with_envs() -> list[tuple[str, str, list[str | Path]]]:
    """(rule, env file name, what it runs) for every rule: the modules of the stages its shell
    command runs (`python -m segsweep <stage>`), or its script file."""
    found = []
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        blocks = re.split(
            r"^(?=(?:rule|checkpoint) \w+:)", smk.read_text(encoding="utf-8"), flags=re.M
        )
        for block in blocks:
            header = re.match(r"(?:rule|checkpoint) (\w+):", block)
            stages = re.findall(r"python -m segsweep (\w+)", block)
            script = re.search(r'script:\s*\n\s*"([^"]+)"', block)
            if not header or not (stages or script):
                continue
            runs: list[str | Path] = [STAGES[stage][0] for stage in stages]
            if script:
                runs.append((smk.parent / script.group(1)).resolve())
            env = re.search(r'conda:\s*\n\s*"([^"]+)"', block)
            assert env, f"rule {header.group(1)} has no conda env"
            found.append((header.group(1), Path(env.group(1)).name, runs))
    return found


@pytest.mark.parametrize("path", sorted((REPO / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_env_files_parse_and_pin(path: Path) -> None:
    packages = env_packages(path)
    assert packages["python"].startswith("3.11")


def test_every_rule_runs_in_an_env_with_what_its_stage_imports() -> None:
    rules = rules_with_envs()
    assert len(rules) >= 18
    for rule, env, runs in rules:
        available = set(env_packages(REPO / "envs" / env))
        for what in runs:
            for name in module_imports(what):
                conda = CONDA_NAMES.get(name, name).lower()
                providers = PROVIDED_BY.get(name, set())
                assert conda in available or providers & available, (
                    f"rule {rule} runs {what}, which imports {name}; envs/{env} lacks {conda}"
                )


def test_the_import_check_follows_stages_and_scripts() -> None:
    """A rule script's imports are followed into the package (as a shell rule's stage's)."""
    report = module_imports(REPO / "workflow" / "scripts" / "report.py")
    assert {"weasyprint", "jinja2", "pandas"} <= report
    assert "torch" in module_imports(STAGES["train"][0])


def test_the_seam_is_followed_into_the_function_a_rule_runs_only() -> None:
    """Training follows the train command into the trainer's imports; choosing the final
    models reads the task through the seam without the trainers' torch."""
    assert "torch" in module_imports("segsweep.tasks.stages:train")
    assert "torch" not in module_imports(REPO / "workflow" / "scripts" / "choose_final.py")
