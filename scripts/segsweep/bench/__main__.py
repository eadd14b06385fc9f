"""`python -m segsweep.bench <name>`: run one benchmark; its last line is the summary figure."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "n4": "our N4 against SimpleITK's default N4 (speed ratio, residual bias)",
    "train": "training steps/s resident and streamed, data wait, memory over budget",
    "dag": "dry-run time of 1,000 and 10,000-run sweeps against a bare Snakefile",
    "halving": "successive halving against the full grid: epochs, hours, chosen configuration"
    " and score",
    "predict": "segsweep predict against the workflow's own inference: seconds and peak memory"
    " per thesis-sized scan, and the native resampling's memory",
}


def main(argv: list[str] | None = None) -> None:
    """Dispatch to `segsweep.bench.<name>.main`."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in BENCHMARKS:
        lines = [f"  {name:<7} {what}" for name, what in BENCHMARKS.items()]
        print("usage: python -m segsweep.bench <name> [args]\n\n" + "\n".join(lines))
        sys.exit(0 if args and args[0] in {"-h", "--help"} else 2)
    importlib.import_module(f"segsweep.bench.{args[0]}").main(args[1:])


if __name__ == "__main__":
    main()
