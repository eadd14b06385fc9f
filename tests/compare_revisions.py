"""Run the default workflow at two revisions and compare what must not change (issue 11, item 7).

    python tests/compare_revisions.py OLD NEW [--work DIR] [--config KEY=VALUE ...]

OLD and NEW are git revisions of this repository, or `.` for the working tree as it is
(uncommitted changes included). Each is exported into its own folder under --work (a fresh temp
folder by default), then, with this interpreter, `snakemake --rulegraph` and `snakemake --cores 2`
run there on the default configuration (`--config task=classification`: the default
classification run; the words are handed to both snakemake calls). Compared byte by byte:

- the rule graph (the edges of `--rulegraph` between rule names), before the run and after it;
- every `results/summary/*.csv`, `results/tables/*.csv` and `results/runs/*/selection.json`;
  a table's measured cost columns (`segsweep.sweep.cost.COST_COLUMNS`: a training job's wall,
  CPU and memory, which no two runs share) are left out of its comparison, every other cell
  is compared as written.

A revision whose folder already holds a finished run (`results/report/thesis.pdf`) is not run
again, so `--work` can keep the old revision's results between comparisons. Prints one line per
differing file and a last line `identical: N files` or `different: N of M files`; exits 1 on any
difference.
"""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from segsweep.sweep.cost import COST_COLUMNS

REPO = Path(__file__).resolve().parents[1]
COMPARED = ("results/summary/*.csv", "results/tables/*.csv", "results/runs/*/selection.json")


def export(revision: str, folder: Path) -> None:
    """The tracked files of `revision` (or of the working tree, `.`) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    if revision == ".":
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout.split(b"\0")
        for name in filter(None, (n.decode() for n in listed)):
            source = REPO / name
            if source.is_file():
                target = folder / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(source.read_bytes())
        return
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision], cwd=REPO, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")


def rule_edges(dot: str) -> str:
    """The rule graph of `snakemake --rulegraph` as sorted "rule -> rule" lines (the dot text
    numbers its nodes and orders its edges differently from one run to the next)."""
    names = dict(re.findall(r'^\s*(\d+)\[label = "([^"]+)"', dot, re.M))
    edges = re.findall(r"^\s*(\d+) -> (\d+)", dot, re.M)
    return "".join(sorted(f"{names[a]} -> {names[b]}\n" for a, b in edges))


CONFIG: list[str] = []  # `--config` words for every snakemake call (set by main)


def snakemake(folder: Path, *args: str) -> subprocess.CompletedProcess:
    config = ["--config", *CONFIG] if CONFIG else []
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args, *config],
        cwd=folder,
        capture_output=True,
        text=True,
    )


def record_rule_graph(revision: str, folder: Path, name: str) -> None:
    graph = snakemake(folder, "--rulegraph")
    if graph.returncode != 0:
        sys.exit(f"{revision}: --rulegraph failed\n{graph.stderr[-3000:]}")
    (folder / name).write_text(rule_edges(graph.stdout))


def prepare(revision: str, folder: Path) -> None:
    """Export `revision` and run the default workflow (unless done), recording its rule graph
    before the run and after it (when the final models are known, so their rules show too)."""
    if (folder / "results/report/thesis.pdf").is_file():
        print(f"{revision}: reusing the finished run in {folder}", flush=True)
        return
    export(revision, folder)
    record_rule_graph(revision, folder, "rulegraph.txt")
    print(f"{revision}: running the default workflow in {folder}", flush=True)
    run = snakemake(folder)
    if run.returncode != 0:
        sys.exit(f"{revision}: the workflow failed\n{run.stderr[-5000:]}")
    record_rule_graph(revision, folder, "rulegraph_after_run.txt")


def same(old: Path, new: Path) -> bool:
    """Byte-identical files, or CSV tables identical but for their measured cost columns."""
    if old.read_bytes() == new.read_bytes():
        return True
    if old.suffix != ".csv":
        return False
    tables = []
    for path in (old, new):
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        kept = [i for i, name in enumerate(rows[0] if rows else []) if name not in COST_COLUMNS]
        tables.append([[row[i] for i in kept] for row in rows])
    return tables[0] == tables[1]


def compared_files(folder: Path) -> set[str]:
    found = {"rulegraph.txt", "rulegraph_after_run.txt"}
    for pattern in COMPARED:
        found |= {str(p.relative_to(folder)) for p in folder.glob(pattern)}
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="git revision, or . for the working tree")
    parser.add_argument("new", help="git revision, or . for the working tree")
    parser.add_argument("--work", type=Path, default=None, help="folder for both checkouts")
    parser.add_argument("--config", nargs="*", default=[], help="KEY=VALUE for snakemake")
    args = parser.parse_args(argv)
    CONFIG[:] = args.config
    work = args.work or Path(tempfile.mkdtemp(prefix="segsweep-compare-"))
    folders = {"old": work / "old", "new": work / "new"}
    prepare(args.old, folders["old"])
    prepare(args.new, folders["new"])
    names = compared_files(folders["old"]) | compared_files(folders["new"])
    different = []
    for name in sorted(names):
        old, new = (folders[k] / name for k in ("old", "new"))
        if not (old.is_file() and new.is_file() and same(old, new)):
            different.append(name)
            print(f"differs: {name}")
            if name.startswith("rulegraph") and old.is_file() and new.is_file():
                before, after = (set(p.read_text().splitlines()) for p in (old, new))
                for edge in sorted(before - after):
                    print(f"  only in {args.old}: {edge}")
                for edge in sorted(after - before):
                    print(f"  only in {args.new}: {edge}")
    if different:
        print(f"different: {len(different)} of {len(names)} files")
        sys.exit(1)
    print(f"identical: {len(names)} files")


if __name__ == "__main__":
    main()
