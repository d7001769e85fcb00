"""``python -m w2v_cli``: the ``w2v`` command, also for launchers that start it by
interpreter path (``w2v launch`` starts its workers this way)."""

from .cli import cli

if __name__ == "__main__":
    cli(prog_name="w2v")
