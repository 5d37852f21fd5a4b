"""ExecuTorch's tokenizers (pytorch_tokenizers) are C++: a file they do not expect can crash the process that
reads it (a llama2.c tokenizer.bin without a single-space piece was a segfault: exit 139, no message). Before
the build's own process loads the bundle's tokenizer, a child process loads it and encodes the eval text with
it; a crash or a hang there becomes one line naming the file. Python errors are left to the build's own load,
which reports them with its own message."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from llamaport.errors import ConfigError

PROBE_TIMEOUT_S = 300  # a 128k-vocabulary tokenizer.json loads in about a second
_CHILD = """
import sys
from llamaport.runtime_tests.tokenizer import encode, load_tokenizer
try:
    tok = load_tokenizer(sys.argv[1])
    text = open(sys.argv[2], encoding="utf-8").read()
except Exception:
    sys.exit(0)  # not a crash: the build's own load reports it
encode(tok, text, bos=True)
"""


def probe_in_child(tokenizer: Path, eval_text: Path, shown_as: Path) -> None:
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(tokenizer), str(eval_text)], capture_output=True,
                              timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        raise ConfigError(f"{shown_as}: ExecuTorch's tokenizer did not finish reading it and encoding the eval text in "
                          f"{PROBE_TIMEOUT_S} s; the file is likely damaged") from e
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        raise ConfigError(f"{shown_as}: ExecuTorch's tokenizer (pytorch_tokenizers) crashed reading it or encoding the "
                          f"eval text with it ({name}); the file is damaged or not the format its name says")
    if proc.returncode != 0:  # an exception in the encoder: the same call in this process would raise it too
        last = (proc.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise ConfigError(f"{shown_as}: ExecuTorch's tokenizer failed to encode the eval text with it ({last})")
