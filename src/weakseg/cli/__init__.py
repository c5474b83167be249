"""Command line: a thin typer layer over the Python API (one verb, one function)."""

from weakseg.cli.app import app, main

__all__ = ["app", "main"]
