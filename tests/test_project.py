"""Project hygiene that CI enforces: the README's quick start is what CI runs; code is formatted;
`snakemake --lint` is clean; the install has what `snakemake --report` needs."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def quick_start() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```\n(.*?)```", section, re.S)
    assert block, "README has no command block under 'Quick start'"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_quick_start_is_two_commands_and_ci_runs_the_second() -> None:
    commands = quick_start()
    assert len(commands) == 2
    assert "snakemake" in commands[0] and "pytest" in commands[1]
    assert commands[1] in (REPO / ".ci/run").read_text().splitlines()


def tool(name: str) -> str:
    path = shutil.which(name) or str(Path(sys.executable).with_name(name))
    if not Path(path).exists():
        pytest.fail(f"{name} is not installed (pip install -e '.[test]')")
    return path


def test_python_is_ruff_clean() -> None:
    for args in (["check"], ["format", "--check"]):
        result = subprocess.run(
            [tool("ruff"), *args, "scripts", "tests", "workflow/scripts"],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_snakemake_files_are_snakefmt_formatted() -> None:
    result = subprocess.run(
        [tool("snakefmt"), "--check", "Snakefile", "workflow/rules"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakemake_lint_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint", "--cores", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (
        "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr
    ), result.stdout[-3000:] + result.stderr[-3000:]


def test_a_non_editable_install_imports_every_module_and_runs_every_stage(tmp_path: Path) -> None:
    """`pip install .` (no source tree on the path): every module imports, the templates and the
    config schema ship as package data, and every stage answers `--help`."""
    source, site = tmp_path / "source", tmp_path / "site"
    for part in ("pyproject.toml", "README.md", "scripts", "workflow/schemas"):
        copy = shutil.copytree if (REPO / part).is_dir() else shutil.copy
        (source / part).parent.mkdir(parents=True, exist_ok=True)
        copy(REPO / part, source / part, **({"symlinks": True} if copy is shutil.copytree else {}))
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    modules = sorted(
        ".".join(p.relative_to(site).with_suffix("").parts).removesuffix(".__init__")
        for p in (site / "segsweep").rglob("*.py")
    )
    script = (
        "import contextlib, importlib, io, sys\n"
        f"modules = {modules!r}\n"
        "for name in modules:\n"
        "    importlib.import_module(name)\n"
        "import segsweep\n"
        "from segsweep.__main__ import STAGES, main\n"
        "from segsweep.config_schema import defaults\n"
        "from segsweep.report.render import TEMPLATES\n"
        "assert defaults('train')['model'] == 'unet2d'\n"
        "assert (TEMPLATES / 'thesis.html.j2').is_file() and (TEMPLATES / 'thesis.css').is_file()\n"
        "for stage in STAGES:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n"
        "            main([stage, '--help'])\n"
        "        except SystemExit as done:\n"
        "            assert done.code == 0, stage\n"
        "    assert 'usage: segsweep' in out.getvalue(), stage\n"
        "print(segsweep.__file__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.strip() == str(site / "segsweep" / "__init__.py")
    assert len(modules) > 50


def test_workflow_catalog_usage_is_what_the_catalog_reads() -> None:
    """The catalog's usage file: the keys it reads, a deployment method the workflow supports
    (envs/ for conda), the report, and flags the README's usage runs with."""
    import yaml

    usage = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())["usage"]
    assert set(usage) == {"mandatory-flags", "software-stack-deployment", "report"}
    assert set(usage["mandatory-flags"]) == {"desc", "flags"}
    deployment = usage["software-stack-deployment"]
    assert set(deployment) == {"conda", "apptainer", "apptainer+conda"}
    assert deployment["conda"] and any((REPO / "envs").glob("*.yaml"))
    assert usage["report"] is True and "snakemake --report" in (REPO / "README.md").read_text()
    assert usage["mandatory-flags"]["flags"] in (REPO / "README.md").read_text()
    assert (REPO / "config" / "README.md").is_file()


def test_readme_lists_every_stage() -> None:
    from segsweep.__main__ import STAGES

    text = " ".join((REPO / "README.md").read_text().split())
    listed = text.split("(stages: ", 1)[1].split(")", 1)[0]
    assert [s.strip() for s in listed.split(",")] == list(STAGES)


def _report_imports() -> set[str]:
    """Top-level packages that Snakemake's report imports only inside `try: … except
    ImportError` (its optional dependencies: "Python package … must be installed to create
    reports")."""
    import snakemake

    found = set()
    for path in (Path(snakemake.__file__).parent / "report").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            caught = [h.type for h in getattr(node, "handlers", [])]
            if not any(isinstance(t, ast.Name) and t.id == "ImportError" for t in caught):
                continue
            for inner in (n for statement in node.body for n in ast.walk(statement)):
                if isinstance(inner, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in inner.names}
                elif isinstance(inner, ast.ImportFrom) and inner.module and not inner.level:
                    found.add(inner.module.split(".")[0])
    return found


def test_the_install_has_what_snakemake_report_needs() -> None:
    """`snakemake --report` works after `pip install -e .`: every package Snakemake's report
    imports optionally is among the project's own dependencies (not the test extra)."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {
        re.split(r"[\[=<>!~; ]", spec, maxsplit=1)[0].lower().replace("_", "-")
        for spec in project["dependencies"]
    }
    needed = _report_imports()
    assert {"jinja2", "pygments"} <= needed  # what Snakemake 9.27 checks for
    assert needed <= declared, f"declare in pyproject.toml: {sorted(needed - declared)}"
