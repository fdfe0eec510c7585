"""``python -m crossmargin``: the ``crossmargin`` command."""

from crossmargin.commands import main

main(prog_name="crossmargin")
