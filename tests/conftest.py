"""Shared fixtures: the whole stack deployed once per session through the SDK.

Ape snapshots the chain around every test, so each test starts from this deployment.
Actors are named by role.
"""

from __future__ import annotations

import pytest
from ape import project
from hypothesis import settings
from prices import set_eth
from sizes import examples

from crossmargin.clients.protocol import Protocol
from crossmargin.ops.config import load_config
from crossmargin.ops.deploy import deploy
from crossmargin.units import account_id, key

# Hypothesis tests without their own size ask for Hypothesis's default 100, scaled as the rest.
settings.register_profile("crossmargin", max_examples=examples(100))
settings.load_profile("crossmargin")


def pytest_collection_modifyitems(config, items):
    """Slow tests first: under `make test` (two xdist workers) they start at once, and the
    other worker runs the short ones beside them instead of waiting for them at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


# The collateral decimals matrix: 6 (settlement), 8 and 18.
SYMBOLS = ("USDC", "WBTC", "WETH")


@pytest.fixture(scope="session")
def admin(accounts):
    return accounts[0]


@pytest.fixture(scope="session")
def guardian(accounts):
    return accounts[1]


@pytest.fixture(scope="session")
def trader(accounts):
    return accounts[2]


@pytest.fixture(scope="session")
def operator(accounts):
    return accounts[3]


@pytest.fixture(scope="session")
def keeper(accounts):
    return accounts[4]


@pytest.fixture(scope="session")
def stranger(accounts):
    return accounts[5]


@pytest.fixture(scope="session")
def maker(accounts):
    """A market maker: signs orders."""
    return accounts[6]


@pytest.fixture(scope="session")
def taker(accounts):
    """Fills makers' orders."""
    return accounts[7]


@pytest.fixture(scope="session")
def config():
    return load_config("local")


@pytest.fixture(scope="session")
def deployment(config, admin, guardian):
    run = deploy(config, admin)
    Protocol(run.manifest).vault.contract.set_guardian(guardian, sender=admin)
    return run


@pytest.fixture(scope="session")
def cm(deployment) -> Protocol:
    return Protocol(deployment.manifest)


@pytest.fixture(scope="session")
def vault(cm):
    return cm.vault.contract


@pytest.fixture(scope="session")
def router(cm):
    return cm.oracle.contract


@pytest.fixture(scope="session")
def engine(cm):
    return cm.engine.contract


@pytest.fixture(scope="session")
def risk_model(cm):
    return cm.engine.risk_model


@pytest.fixture(scope="session")
def clearing(cm):
    return cm.clearing.contract


@pytest.fixture(scope="session")
def markets(cm):
    return cm.markets.contract


@pytest.fixture(scope="session")
def exchange(cm):
    return cm.exchange.contract


@pytest.fixture(scope="session")
def list_option(cm, admin, chain):
    """Lists an option ``days`` from now; returns its instrument id."""

    def _list(underlying: str = "ETH", is_call: bool = True, strike="3000", days: float = 30, oi_cap=10**6) -> int:
        expiry = chain.pending_timestamp + int(days * 86_400)
        return cm.markets.list_option(admin, underlying, is_call, strike, expiry, oi_cap)

    return _list


@pytest.fixture(scope="session")
def usdc(cm):
    return cm.token("USDC")


@pytest.fixture(scope="session")
def weth(cm):
    return cm.token("WETH")


@pytest.fixture(scope="session")
def wbtc(cm):
    return cm.token("WBTC")


@pytest.fixture(params=SYMBOLS)
def symbol(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def fund(cm, admin):
    """Mints ``amount`` of ``symbol`` to ``actor`` and approves the vault for all of it."""

    def _fund(actor, symbol: str, amount) -> None:
        cm.token(symbol).mint(admin, actor, amount)
        cm.vault.approve(actor, symbol)

    return _fund


@pytest.fixture(scope="session")
def create_account(cm, fund):
    """Funds ``actor`` and deposits ``deposits`` ({symbol: amount}) into a subaccount."""

    def _create(actor, deposits: dict, subaccount: int = 0):
        for symbol, amount in deposits.items():
            fund(actor, symbol, amount)
            cm.vault.deposit(actor, symbol, amount, subaccount)
        return actor

    return _create


@pytest.fixture(scope="session")
def insure(cm, fund, accounts):
    """Deposits ``amount`` USDC into the insurance fund from an LP (accounts[9])."""

    def _insure(amount: str):
        lp = accounts[9]
        fund(lp, "USDC", amount)
        cm.fund.deposit(lp, amount)

    return _insure


@pytest.fixture(scope="session")
def feed(cm):
    """The mock aggregator behind an oracle key."""
    return cm.oracle.aggregator


@pytest.fixture(scope="session")
def deploy_feed(admin):
    def _deploy(decimals: int = 8, answer: int = 3000 * 10**8, description: str = "TEST / USD"):
        return admin.deploy(project.MockAggregator, decimals, description, answer)

    return _deploy


@pytest.fixture(scope="session")
def oracle_key():
    return key


@pytest.fixture
def books(create_account, maker, taker):
    """Maker and taker, each with 100k USDC."""
    create_account(maker, {"USDC": "100000"})
    create_account(taker, {"USDC": "100000"})
    return maker, taker


@pytest.fixture
def book(cm, create_account, maker, trader):
    """The liquidation books' base: `trader` short 10 ETH perp at 3,000 with 10,000 USDC; `maker` long with 1M USDC."""
    create_account(maker, {"USDC": "1000000"})
    create_account(trader, {"USDC": "10000"})
    cm.trade(maker, trader, cm.markets.perp("ETH"), "10", "3000")
    return account_id(trader.address, 0)


@pytest.fixture
def run_status(cm, monkeypatch, capsys):
    """Runs `ape run status` in-process on this session's deployment (its command,
    ``crossmargin.commands.status``, with `Protocol.load` returning ``cm``); returns what it
    printed."""

    def _run(width: int = 200, **options) -> str:
        from crossmargin.commands import status

        monkeypatch.setattr(status.Protocol, "load", staticmethod(lambda *_a: cm))
        monkeypatch.setattr(status.console, "width", width)
        monkeypatch.setattr(status.console, "stderr", False)  # as a command without --json starts
        capsys.readouterr()
        status.cli.callback(**{"top": 1000, "no_model": True, "as_json": False, **options})
        return capsys.readouterr().out

    return _run


@pytest.fixture
def frozen_clock(chain):
    """Every block after this one has its timestamp (until the test ends): what a preview
    taken at this block assumes of the fills that follow it."""
    chain.provider.make_request("anvil_setBlockTimestampInterval", [0])
    yield
    chain.provider.make_request("anvil_removeBlockTimestampInterval", [])


@pytest.fixture
def bidder(create_account, keeper):
    """A liquidator's account with 100k USDC (subaccount 0 of `keeper`)."""
    create_account(keeper, {"USDC": "100000"})
    return keeper


@pytest.fixture
def short_calls(cm, list_option, admin, maker, trader, taker, operator, create_account, insure):
    """An insolvent short-call book (10 calls struck at 3,000 sold for 150 on 20,000 USDC,
    ETH at 6,000: its loss is socialized) and two passive depositors,
    `taker` and `operator`, with 50,000 USDC each (the waterfall's book; test_feed_dependencies
    has its own)."""
    insure("10")
    call = list_option("ETH", True, "3000", 30)
    create_account(maker, {"USDC": "1000000"})
    create_account(trader, {"USDC": "20000"})
    create_account(taker, {"USDC": "50000"})
    create_account(operator, {"USDC": "50000"})
    cm.trade(maker, trader, call, "10", "150")
    set_eth(cm, admin, "6000")
    return account_id(trader.address, 0)
