"""Fork test: deploy on a devnet node started here, fork it with a second node, act on the
fork, and show the devnet is untouched. Everything runs through the real CLI entry points
(`ape run deploy`, `ape console`) in subprocesses, as an operator would use them."""

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from ape import project
from web3 import Web3

ROOT = Path(__file__).resolve().parent.parent
DEVNET = "http://127.0.0.1:8545"
# one worker runs both (the devnet node holds a fixed port); slow: nodes in subprocesses
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("devnet")]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _ape(args, env, stdin=None, timeout=300):
    result = subprocess.run(
        ["ape", *args], cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"ape {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def devnet():
    if _port_open(8545):
        pytest.fail("something already listens on 127.0.0.1:8545; the devnet node needs that port")
    anvil = shutil.which("anvil")
    assert anvil, "anvil not on PATH (run `npm ci`; the Makefile puts node_modules/.bin on PATH)"
    node = subprocess.Popen([anvil, "--port", "8545", "--silent"], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if _port_open(8545):
                break
            time.sleep(0.1)
        yield Web3(Web3.HTTPProvider(DEVNET))
    finally:
        node.terminate()
        node.wait(timeout=10)


def _devnet_contract(devnet, env, name: str):
    """A web3 handle on contract ``name`` of the devnet's manifest (read straight from the node)."""
    manifest = json.loads((Path(env["CROSSMARGIN_DEPLOYMENTS"]) / "devnet.json").read_text())
    abi = [a.model_dump() for a in getattr(project, name).contract_type.abi]
    return devnet.eth.contract(address=manifest["contracts"][name], abi=abi)


def _session(*lines: str) -> str:
    """An ``ape console`` session fed on stdin."""
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return {**os.environ, "CROSSMARGIN_DEPLOYMENTS": str(tmp_path_factory.mktemp("deployments"))}


def test_fork__actions_on_fork_leave_devnet_untouched(devnet, env):
    out = _ape(["run", "deploy", "--network", "ethereum:devnet:node"], env)
    assert "transactions sent" in out
    again = _ape(["run", "deploy", "--network", "ethereum:devnet:node"], env)
    assert "0 transactions sent" in again  # idempotent on a persistent node

    vault = _devnet_contract(devnet, env, "Vault")
    trader = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"  # test account 2
    block_before = devnet.eth.block_number

    session = _session(
        "trader = accounts.test_accounts[2]",
        "cm.token('USDC').mint(accounts.test_accounts[0], trader, '500')",
        "cm.vault.deposit(trader, 'USDC', '500')",
        "print('FORK_CASH', cm.vault.balances(trader).cash)",
        "print('FORK_VAULT', cm.vault.address)",
    )
    out = _ape(["console", "--network", "ethereum:devnet-fork:foundry"], env, stdin=session)
    assert "FORK_CASH 500" in out
    assert f"FORK_VAULT {vault.address}" in out  # the console loaded the devnet manifest

    assert vault.functions.cash_of(trader, 0).call() == 0
    assert devnet.eth.block_number == block_before


def test_fork__keeper_liquidates_on_the_fork_only(devnet, env, tmp_path):
    """A book goes under maintenance on the devnet; the keeper, run against a fork of it,
    finds it from events and starts its auction there; the devnet never sees it."""
    _ape(["run", "deploy", "--network", "ethereum:devnet:node"], env)
    setup = _session(
        "admin, maker, trader, bidder = (accounts.test_accounts[i] for i in (0, 1, 2, 4))",
        "funds = ((maker, '1000000'), (trader, '10000'), (bidder, '1000000'))",
        "[cm.token('USDC').mint(admin, who, amount) for who, amount in funds]",
        "[cm.vault.deposit(who, 'USDC', amount) for who, amount in funds]",
        "cm.trade(maker, trader, cm.markets.perp('ETH'), '10', '3000')",  # trader short 10
        "feeds = (('ETH/USD', '3500'), ('ETH/IV', '0.6'), ('BTC/USD', '60000'), ('BTC/IV', '0.5'))",
        "[cm.oracle.push(admin, k, v) for k, v in (*feeds, ('USDC/USD', '1'))]",
        "print('DEVNET_HEALTH', cm.engine.margin(trader).maintenance_health < 0)",
    )
    out = _ape(["console", "--network", "ethereum:devnet:node"], env, stdin=setup)
    assert "DEVNET_HEALTH True" in out
    liquidator = _devnet_contract(devnet, env, "Liquidator")
    account = int("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", 16) << 96  # test account 2, subaccount 0
    block_before = devnet.eth.block_number

    out = _ape(
        [
            "run",
            "keeper",
            "liquidate",
            "--network",
            "ethereum:devnet-fork:foundry",
            "--account",
            "4",
            "--once",
            "--threshold",
            "0.01",
            "--state-file",
            str(tmp_path / "keeper.json"),
        ],
        env,
        timeout=600,
    )
    assert "1 due" in out and "1 start sent" in out, out

    # the devnet never saw any of it
    assert devnet.eth.block_number == block_before
    assert liquidator.functions.in_auction(account).call() is False
