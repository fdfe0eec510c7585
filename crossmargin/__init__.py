"""crossmargin SDK: typed access to the deployed protocol for scripts, bots, console and tests."""

from crossmargin.units import WAD, account_id, from_units, from_wad, to_units, to_wad

__all__ = ["WAD", "account_id", "from_units", "from_wad", "to_units", "to_wad"]
