"""`python -m llamaport`: the CLI."""

from llamaport.cli import run

run()
