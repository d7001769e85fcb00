"""``python -m w2v_cli``: the ``w2v`` command, for launchers that start it by interpreter path."""

from .cli import cli

cli(prog_name="w2v")
