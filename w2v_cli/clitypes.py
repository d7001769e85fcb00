"""Click parameter types the standard ones lack."""

from __future__ import annotations

import math

import click


class FiniteFloat(click.FloatRange):
    """A float in a range, like ``click.FloatRange``, that is also neither nan nor infinite
    (FloatRange lets nan through every bound, and inf through every lower bound)."""

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


class GivenPath(click.Path):
    """``click.Path`` that refuses an empty name, which ``pathlib`` would read as the current
    folder (``--workdir ''`` from an unset shell variable)."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value:
            self.fail("is empty: give a name.", param, ctx)
        return super().convert(value, param, ctx)
