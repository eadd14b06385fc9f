"""A rule's script writes what it prints into the job's log, as a shell rule's `> {log} 2>&1`."""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def logged(path: str | Path) -> Iterator[None]:
    """Send stdout and stderr of the block to the log file `path`. An exception's traceback is
    written there too, and the exception goes on, so Snakemake reports the job as failed (with
    the error's last line, as the shell rules report theirs)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as log:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            try:
                yield
            except BaseException as error:
                traceback.print_exc()
                log.flush()
                print(f"{type(error).__name__}: {error}".splitlines()[0], file=sys.__stderr__)
                raise
