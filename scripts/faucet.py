"""``ape run faucet``: the ``crossmargin faucet`` command (``crossmargin.commands.faucet``), run by ape."""

from crossmargin.commands.faucet import cli

__all__ = ["cli"]
