"""``ape run preview``: the ``crossmargin preview`` command (``crossmargin.commands.preview``), run by ape."""

from crossmargin.commands.preview import cli

__all__ = ["cli"]
