"""Silverback bots of the crossmargin keepers (``silverback run <name> --network ...``).

Each bot is a thin runner over :mod:`crossmargin.keeper`; see :mod:`bots.common`.
"""
