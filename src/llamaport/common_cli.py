"""What the CLI's modules share: consoles, the error-to-exit mapping, option types, quieting libraries."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
import typer.core

from llamaport.errors import CheckFailed, LlamaportError

_verbose = False  # set once by the CLI callback, from --verbose


def set_verbose(verbose: bool) -> None:
    global _verbose
    _verbose = verbose
    if verbose:  # native libraries' log lines too, in this process and in the device runners it starts
        os.environ["LLAMAPORT_NATIVE_LOGS"] = "1"
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(name)s: %(message)s")


def _console(stderr: bool = False):
    from rich.console import Console
    stream = sys.stderr if stderr else sys.stdout
    # Tables are wider than the 80 columns rich assumes when output is captured (CI logs, pipes).
    return Console(stderr=stderr, width=None if stream.isatty() else 160, highlight=False)


def _complete_recipe(incomplete: str) -> list[str]:
    from llamaport.quantize import RECIPES
    return [r for r in RECIPES if r.startswith(incomplete)]


def _complete_target(incomplete: str) -> list[str]:
    from llamaport.targets import BUILTIN_TARGETS
    return [t for t in BUILTIN_TARGETS if t.startswith(incomplete)]


def _version(value: bool) -> None:
    if value:
        from llamaport import __version__
        print(f"llamaport {__version__}")
        raise typer.Exit()


# Libraries whose own warnings and logs say nothing to a user of llamaport; --verbose shows them.
QUIET_LIBRARIES = ("torch", "torchao", "executorch", "transformers", "optimum", "onnx", "onnxruntime", "onnxscript",
                   "onnx_ir", "coremltools")


def _quiet_libraries() -> None:
    """After `import torch` (which sets its own log levels): only those libraries' warnings are silenced,
    by module, so a warning from llamaport or the user's own code still shows."""
    import warnings

    if _verbose:
        return
    pattern = "|".join(QUIET_LIBRARIES)
    warnings.filterwarnings("ignore", module=rf"({pattern})(\.|$)")
    # torch 2.13 deprecates pytree's LeafSpec; ExecuTorch 1.5.1 still pickles one while it copies the exported
    # program, so the warning is raised from the standard library's copyreg. Can go with an executorch that
    # no longer uses LeafSpec.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)
    import torch
    torch._logging.set_logs(all=logging.ERROR)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)


class OneLineUsageErrors(typer.core.TyperGroup):
    """Usage errors (a missing argument, an option's bad value, an unknown command) as the one line every other
    bad input gets, `error: llamaport compare: Missing argument 'REPORTS...'. See `llamaport compare --help`.`,
    exit 2; typer would draw a five-line box."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        # typer 0.29 vendors click as typer._click (its exceptions are not the click package's); this goes
        # back to `import click` if typer stops vendoring it.
        from typer import _click as click

        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as e:
            e.show()
            sys.exit(e.exit_code)
        except click.exceptions.ClickException as e:
            where = e.ctx.command_path if getattr(e, "ctx", None) is not None else "llamaport"
            message = " ".join(e.format_message().split()).rstrip(".") + "."  # click wraps long values onto lines
            hint = f" See `{where} --help`." if isinstance(e, click.exceptions.UsageError) else ""
            _console(stderr=True).print(f"[bold red]error:[/] {escape(where)}: {escape(message)}{hint}", soft_wrap=True)
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            sys.exit(130)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape
    return rich_escape(text)


def _fail(e: LlamaportError):
    err = _console(stderr=True)
    if _verbose:
        err.print_exception()
    # The message is plain text: as markup, "[[target]]" would print as "[]" (rich reads it as a tag).
    err.print("[bold red]error:[/] ", end="", markup=True)
    err.print(str(e), soft_wrap=True, markup=False, highlight=False)
    if isinstance(e, CheckFailed):
        from rich.table import Table

        from llamaport.runtime_tests.gates import noise_verdict
        # The standard error says whether a miss could be the eval set's sampling noise (within 2 SE) or not.
        table = Table("gate", "value", "missed by", "± SE", "noise", title="gates not met")
        for f in e.failures:
            se = "–" if f.standard_error is None else f"{f.standard_error:.3g}"
            table.add_row(f.gate, f"{f.value:.6g}", f"{f.missed_by:.6g}", se, noise_verdict(f))
        err.print(table)
    raise typer.Exit(e.exit_code)


def with_se(value: float, se: float | None, spec: str) -> str:
    """`value` formatted by `spec`, with ± its standard error where one was measured ("94.1 ± 1.5"), as
    llama.cpp's perplexity tool prints its statistics; reports from before standard errors show the value alone."""
    return f"{value:{spec}}" if se is None else f"{value:{spec}} ± {se:{spec}}"


def kld_text(a) -> str:
    """A record's KLD for a line of text: "2.10e-03 ± 4.0e-04", or, where the golden outputs bound it to an
    interval wider than 1 % of it (an adaptive top-k of a large vocabulary), "≤ 2.10e-03 ± … (≥ 1.90e-03)"."""
    text = with_se(a.kld_mean, a.kld_se, '.2e')
    lower = getattr(a, "kld_lower_mean", None)
    if lower is not None and a.kld_mean - lower > 0.01 * a.kld_mean:
        return f"≤ {text} (≥ {lower:.2e})"
    return text


def _print_json(data) -> None:
    print(json.dumps(data, indent=2))


TargetsFile = Annotated[Optional[Path], typer.Option("--targets-file", help="TOML file of extra \\[\\[target]] profiles.")]
TargetOpt = Annotated[Optional[str], typer.Option("--target", "-t", autocompletion=_complete_target,
                                                  help="Target id (see `llamaport targets`). Default: linux-x86_64-xnnpack.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of tables.")]
