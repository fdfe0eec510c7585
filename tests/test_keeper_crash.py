"""A keeper killed mid-sweep and restarted, as an operator runs it: `ape run keeper liquidate
--once` in a subprocess against this session's anvil (the node provider on its URI, network
`local`), killed with SIGKILL at the sender's test-only crash point
(`CROSSMARGIN_KEEPER_CRASH_AFTER`, crossmargin/clients/sender.py), then run again on the same state
file. Rule (README, keepers): after any crash the next sweep acts on every due account exactly
once, and the journal ends with no stale `pending` entry.

Books: `trader`'s subaccounts 1..23 are each short 1 ETH perp at 3,000 with 1,000 USDC
against `maker` (liquidatable from ETH ~3,448); at 3,500 all 23 are due.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from crossmargin.units import account_id

pytestmark = pytest.mark.slow  # keepers in subprocesses

ROOT = Path(__file__).resolve().parent.parent
DUE = 23


@pytest.fixture
def due_books(cm, create_account, maker, trader, admin):
    """23 accounts below maintenance margin; returns their ids."""
    create_account(maker, {"USDC": "1000000"})
    perp = cm.markets.perp("ETH")
    for sub in range(1, DUE + 1):
        create_account(trader, {"USDC": "1000"}, subaccount=sub)
        cm.trade(maker, trader, perp, "1", "3000", taker_subaccount=sub)
    cm.oracle.push(admin, "ETH/USD", "3500")
    cm.oracle.push(admin, "ETH/IV", "0.6")
    ids = [account_id(trader.address, sub) for sub in range(1, DUE + 1)]
    assert all((m := cm.engine.contract.margin(a)).equity < m.maintenance for a in ids)
    return ids


@pytest.fixture
def run_keeper(cm, chain, tmp_path):
    """Runs `ape run keeper liquidate --once` as test account 4 (the `keeper`) on this
    session's node, with the state file in tmp_path; returns the finished process."""
    deployments = tmp_path / "deployments"
    cm.manifest.save(deployments / "local.json")
    state_file = tmp_path / "keeper.json"

    def _run(crash_after: int | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "CROSSMARGIN_DEPLOYMENTS": str(deployments)}
        env.pop("CROSSMARGIN_KEEPER_CRASH_AFTER", None)
        if crash_after is not None:
            env["CROSSMARGIN_KEEPER_CRASH_AFTER"] = str(crash_after)
        args = ["ape", "run", "keeper", "liquidate", "--network", f"ethereum:local:{chain.provider.uri}"]
        args += ["--account", "4", "--once", "--threshold", "none", "--state-file", str(state_file)]
        return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    _run.state_file = state_file
    return _run


def mined_pool(chain, sender, timeout: float = 30.0) -> None:
    """Waits until the node has mined every pooled transaction of ``sender``."""
    web3, deadline = chain.provider.web3, time.monotonic() + timeout
    while web3.eth.get_transaction_count(sender.address, "pending") > sender.nonce:
        assert time.monotonic() < deadline, "the node did not mine the pooled transactions"
        time.sleep(0.1)


@pytest.mark.parametrize("crash_after", [0, 2, DUE], ids=["before-any-send", "after-2-mined", "after-all-sent"])
def test_keeper_killed_mid_sweep__restart_starts_every_due_account_once(
    cm, chain, due_books, run_keeper, keeper, crash_after
):
    """Killed after journaling its 23 starts and after `crash_after` of them reached the
    node (anvil mines each as it arrives), the restarted keeper starts the rest, none twice,
    and resolves every journal entry.

    Fails on c1dcd68 (with only the crash point added): the restart skips every unsent start
    "in flight (nonce N)" (before-any-send, after-2-mined), and the entries of mined starts
    stay `pending` (after-2-mined, after-all-sent)."""
    nonce = keeper.nonce
    crashed = run_keeper(crash_after)
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    journal = json.loads(run_keeper.state_file.read_text())["sent"]
    assert len(journal) == DUE and {e["status"] for e in journal.values()} == {"pending"}
    mined_pool(chain, keeper)  # what reached the node is mined, as it would be before a restart
    assert keeper.nonce == nonce + crash_after
    in_auction = cm.liquidator.contract.in_auction
    assert sum(in_auction(a) for a in due_books) == crash_after

    restarted = run_keeper()
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert f"{DUE} due" in restarted.stdout, restarted.stdout
    assert "in flight" not in restarted.stdout
    assert all(in_auction(a) for a in due_books), restarted.stdout
    assert keeper.nonce == nonce + DUE  # one start each, no second (or reverted) attempt
    journal = json.loads(run_keeper.state_file.read_text())["sent"]
    assert {k: e["status"] for k, e in journal.items()} == {f"start:{a:#x}": "done" for a in due_books}
