"""The clearinghouse runs `ClearingMoves` in its own storage by delegatecall: the two
contracts must lay their storage out identically, slot for slot (SPECIFICATION.md,
Clearinghouse: layout). Compiled with the project's vyper, as `ape compile` does."""

import json
import subprocess
import sys
from pathlib import Path

import snekmate

ROOT = Path(__file__).parents[1]


def layout(name: str) -> dict:
    vyper = Path(sys.executable).parent / "vyper"
    out = subprocess.run(
        [
            str(vyper),
            "-p",
            "contracts",
            "-p",
            str(Path(next(iter(snekmate.__path__))).parent),
            "-f",
            "layout",
            f"contracts/{name}.vy",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_clearing_moves__storage_layout_is_the_clearinghouses():
    house, moves = layout("Clearinghouse"), layout("ClearingMoves")
    assert moves["storage_layout"] == house["storage_layout"]
    # the lock is the clearinghouse's (its entry points hold it); the moves use no transient slot
    assert "transient_storage_layout" not in moves and "$.nonreentrant_key" in house["transient_storage_layout"]
    # the shared state is the book module's, from slot 2 on (slots 0 and 1: ownable, ownable_2step)
    book = house["storage_layout"]["book"]
    assert sorted(v["slot"] for v in book.values()) == list(range(2, 2 + len(book)))
