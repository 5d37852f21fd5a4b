"""The process that runs on the device: one runner over one bundle, from the bundle alone (manifest,
golden outputs, model and tokenizer files). It prints one tagged JSON line the host parses; anything
else on stdout is the runtime's own log. Peak RSS is this process's: interpreter and runtime included,
with the RSS before the model was loaded reported beside it.

    python -m llamaport.runtime_tests.device_run BUNDLE --runner executorch-runtime [--repeats 5 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import traceback
from pathlib import Path

RESULT_TAG = "LLAMAPORT_RESULT "


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kb / 1024


def emit(result: dict) -> None:
    sys.stdout.flush()
    print("\n" + RESULT_TAG + json.dumps(result), flush=True)


def run_and_emit(runner: str, produce) -> int:
    """Call `produce()` -> result fields, add memory figures, print the tagged line. An error is reported
    the same way (the host raises it), with the traceback on stderr for --verbose."""
    try:
        before = rss_mb()
        result = produce()
        emit({"runner": runner, **result, "rss_before_load_mb": before, "peak_rss_mb": peak_rss_mb()})
        return 0
    except Exception as e:
        traceback.print_exc()
        emit({"runner": runner, "error": f"{type(e).__name__}: {e}"})
        return 1


def protocol_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-accuracy", action="store_true")


def protocol_of(args):
    from llamaport.runtime_tests.latency import LatencyProtocol
    return LatencyProtocol(decode_tokens=args.decode_tokens, warmup=args.warmup, repeats=args.repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llamaport.runtime_tests.device_run")
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--runner", required=True)
    protocol_args(parser)
    args = parser.parse_args(argv)

    def produce() -> dict:
        from llamaport.entry import load_entry
        from llamaport.runtime_tests.bundle_files import verify_bundle
        from llamaport.runtime_tests.golden import Golden
        from llamaport.runtime_tests.manifest import GOLDEN_PATH
        from llamaport.runtime_tests.runners import RUNNERS

        manifest = verify_bundle(args.bundle)  # every file's sha256, on the device, before any runtime loads
        if args.runner not in RUNNERS:
            raise ValueError(f"unknown runner {args.runner!r}; known: {', '.join(RUNNERS)}")
        return load_entry(RUNNERS[args.runner])(args.bundle, manifest, Golden.load(args.bundle / GOLDEN_PATH),
                                                protocol_of(args), not args.no_accuracy)
    return run_and_emit(args.runner, produce)


if __name__ == "__main__":
    sys.exit(main())
