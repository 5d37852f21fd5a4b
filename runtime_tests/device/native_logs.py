"""Native libraries' own log lines (pytorch_tokenizers' `I tokenizers:regex.cpp:40] ...`, ExecuTorch's
`[cpuinfo_utils.cpp:71] ...`) are written to file descriptor 2, past Python's logging. They say nothing
to a user, so they are dropped around the calls that print them, unless LLAMAPORT_NATIVE_LOGS=1."""

from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def native_stderr_quiet():
    if os.environ.get("LLAMAPORT_NATIVE_LOGS") == "1":
        yield
        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
