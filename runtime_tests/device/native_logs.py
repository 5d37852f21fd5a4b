"""Native libraries' own log lines (pytorch_tokenizers' `I tokenizers:regex.cpp:40] ...`, ExecuTorch's
`[cpuinfo_utils.cpp:71] ...`) are written to file descriptor 2, past Python's logging. They say nothing
to a user, so they are dropped around the calls that print them, unless LLAMAPORT_NATIVE_LOGS=1."""

from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def native_stderr_quiet(fds: tuple[int, ...] = (2,)):
    if os.environ.get("LLAMAPORT_NATIVE_LOGS") == "1":
        yield
        return
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in fds]
    try:
        with open(os.devnull, "w") as null:
            for fd in fds:
                os.dup2(null.fileno(), fd)
            yield
    finally:
        for fd, copy in zip(fds, saved):
            os.dup2(copy, fd)
            os.close(copy)


def native_output_quiet():
    """Both native streams: the TOSA reference model prints its version warning on stdout, every run."""
    return native_stderr_quiet((1, 2))
