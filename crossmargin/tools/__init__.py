"""Tooling around the protocol, importable in a checkout but not shipped in the wheel.

The ``ape run`` scripts (``scripts/``) and the tests use these; the installed SDK and the
``crossmargin`` command never import them.

- :mod:`crossmargin.tools.demo`: ``ape run demo`` (a liquidation from start to settlement)
- :mod:`crossmargin.tools.crash`, :mod:`crossmargin.tools.losses`: ``ape run crash`` and its
  loss waterfall
- :mod:`crossmargin.tools.gas`, :mod:`crossmargin.tools.benchmarks`,
  :mod:`crossmargin.tools.liquidation_bench`, :mod:`crossmargin.tools.scale_bench`,
  :mod:`crossmargin.tools.worst_case`: the gas table (``ape run gas``)
- :mod:`crossmargin.tools.efficiency`: the capital-efficiency comparison
- :mod:`crossmargin.tools.memwatch`: peak anvil memory of a command
"""
