"""A rule's script writes what it prints into the job's log, as a shell rule's `> {log} 2>&1`."""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

from segsweep.errors import InputError


@contextlib.contextmanager
def logged(path: str | Path) -> Iterator[None]:
    """Send stdout and stderr of the block to the log file `path`. An exception's traceback is
    written there too, and the exception goes on, so Snakemake reports the job as failed (with
    the error's last line, as the shell rules report theirs; a problem in the input data with
    its whole message, e.g. the table of every problem of a dataset)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as log:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            try:
                yield
            except BaseException as error:
                traceback.print_exc()
                log.flush()
                message = f"{type(error).__name__}: {error}"
                shown = message if isinstance(error, InputError) else message.splitlines()[0]
                print(shown, file=sys.__stderr__)
                raise
