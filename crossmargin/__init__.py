"""crossmargin SDK: typed access to the deployed protocol for scripts, bots, console and tests.

- ``crossmargin.units``: human amounts, WAD and token units, account ids (re-exported here)
- ``crossmargin.clients``: ``Protocol`` (the console's ``cm``), orders, fund, sender, errors
- ``crossmargin.model``: the bit-exact Python model of the contracts' arithmetic
- ``crossmargin.keeper``: the keeper, one module per task over a shared core
- ``crossmargin.ops``: network config, deploy, deployment manifest, anvil settings
- ``crossmargin.commands``, ``crossmargin.simulate``: the ``crossmargin`` command
- ``crossmargin.abi``: the bundled ABIs
- ``crossmargin.tools``: the checkout's demo, crash and benchmarks (not installed)
"""

from crossmargin.units import WAD, account_id, from_units, from_wad, to_units, to_wad

__all__ = ["WAD", "account_id", "from_units", "from_wad", "to_units", "to_wad"]
