"""``ape run keeper``: the ``crossmargin keeper`` command (``crossmargin.commands.keeper``), run by ape."""

from crossmargin.commands.keeper import cli

__all__ = ["cli"]
