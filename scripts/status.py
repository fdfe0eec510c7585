"""``ape run status``: the ``crossmargin status`` command (``crossmargin.commands.status``), run by ape."""

from crossmargin.commands.status import cli

__all__ = ["cli"]
