"""``python -m w2v_cli``: the same as the ``w2v`` command."""

from .cli import cli

if __name__ == "__main__":
    cli(prog_name="w2v")
