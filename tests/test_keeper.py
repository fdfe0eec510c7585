"""Keepers on the real anvil stack (crossmargin/keeper/, the Silverback bots in bots/).

Books: `trader` is short 10 ETH perp at 3,000 with 10,000 USDC (MM 4,800; liquidatable from
ETH ~3,448, insolvent from ~4,000); `operator` is short 1 ETH with 1,000 USDC (liquidatable
from ~3,448 too); `taker` holds 50,000 USDC and no position (never liquidatable); `maker`
(1M USDC) is long against them. The keeper bids from `keeper`'s subaccount 0 (1M USDC).
"""

from __future__ import annotations

import importlib
import json
import sys
from decimal import Decimal

import ape
import pytest
from ape.exceptions import ProviderError
from prices import set_eth

from crossmargin.keeper import Keeper, KeeperConfig, describe_account
from crossmargin.keeper import prices as price_mover
from crossmargin.units import account_id, to_wad


def aid(actor, sub: int = 0) -> int:
    return account_id(actor.address, sub)


@pytest.fixture
def books(cm, create_account, maker, trader, operator, taker):
    """The accounts of the module docstring; returns their ids."""
    create_account(maker, {"USDC": "1000000"})
    create_account(trader, {"USDC": "10000"})
    create_account(operator, {"USDC": "1000"})
    create_account(taker, {"USDC": "50000"})
    perp = cm.markets.perp("ETH")
    cm.trade(maker, trader, perp, "10", "3000")
    cm.trade(maker, operator, perp, "1", "3000")
    return {"maker": aid(maker), "trader": aid(trader), "operator": aid(operator), "taker": aid(taker)}


@pytest.fixture
def bidder(create_account, keeper):
    create_account(keeper, {"USDC": "1000000"})
    return keeper


@pytest.fixture
def lp(cm, fund, stranger):
    """Deposits `amount` USDC into the insurance fund."""

    def _lp(amount: str) -> None:
        fund(stranger, "USDC", amount)
        usdc = cm.token("USDC")
        usdc.contract.approve(cm.fund.address, 2**256 - 1, sender=stranger)
        cm.fund.contract.deposit(usdc.units(amount), stranger, sender=stranger)

    return _lp


@pytest.fixture
def make_keeper(cm, keeper, tmp_path):
    """A Keeper acting from `keeper` with a state file in tmp_path (bidding off unless asked)."""

    def _make(sender=keeper, **overrides) -> Keeper:
        options = {"state_file": tmp_path / "keeper.json", "retry_delay": 0.01, "bid_threshold": None}
        options.update(overrides)
        return Keeper(cm, sender, KeeperConfig(**options))

    return _make


def started(report) -> set[str]:
    return {a.target for a in report.actions if a.kind == "start" and a.status == "sent"}


# ------------------------------------------------------------------ discovery


def test_discover__accounts_from_deposits_moves_and_trades(cm, books, make_keeper, trader, create_account, stranger):
    keeper = make_keeper()
    report = keeper.discover()
    assert report.ok, report.errors
    assert set(books.values()) <= keeper.state.accounts
    assert set(report.new_accounts) == keeper.state.accounts
    assert report.from_block == 0 and report.to_block == ape.chain.blocks.head.number
    # incremental: only the new events are read, and only the new account is new
    cm.vault.move(trader, "USDC", "10", 0, 7)
    create_account(stranger, {"USDC": "5"}, subaccount=3)
    again = keeper.discover()
    assert again.from_block == report.to_block + 1
    assert set(again.new_accounts) == {aid(trader, 7), aid(stranger, 3)}
    # the cursor is in the state file
    saved = json.loads(keeper.config.state_file.read_text())
    assert saved["last_block"] == again.to_block
    assert hex(aid(trader, 7)) in saved["accounts"]


# ------------------------------------------------------------------ liquidation


def test_liquidate__starts_every_due_auction_and_none_for_healthy(cm, books, make_keeper, admin, keeper):
    k = make_keeper()
    k.discover()
    healthy = k.liquidate()
    assert healthy.ok and healthy.due == [] and healthy.actions == []
    assert healthy.screened == len(k.state.accounts)

    set_eth(cm, admin, "3500")
    k.discover()
    report = k.liquidate()
    assert report.ok, report.errors
    due = {books["trader"], books["operator"]}
    assert set(report.due) == due
    assert started(report) == {describe_account(a) for a in due}
    liquidator = cm.liquidator.contract
    for name, account in books.items():
        assert liquidator.in_auction(account) == (account in due), name
        if account in due:  # the keeper is owed the tip
            assert cm.liquidator.auction(account).keeper == keeper.address
    # a second round finds them running: nothing is sent again
    nonce = keeper.nonce
    k.discover()
    again = k.liquidate()
    assert again.count(kind="start") == 0 and again.auctions == 2
    assert keeper.nonce == nonce


def test_liquidate__insolvent_after_start__marked(cm, books, make_keeper, admin, stranger, lp):
    lp("50000")
    set_eth(cm, admin, "3500")
    cm.liquidator.start(stranger, books["trader"])
    set_eth(cm, admin, "4100")  # equity about -1,000 now
    k = make_keeper()
    k.discover()
    report = k.liquidate()
    marks = [a for a in report.actions if a.kind == "mark_insolvent"]
    assert [(a.target, a.status) for a in marks] == [(describe_account(books["trader"]), "sent")]
    assert cm.liquidator.auction(books["trader"]).insolvent_at != 0
    # operator's auction started insolvent: marked at start, nothing to mark
    assert cm.liquidator.auction(books["operator"]).insolvent_at != 0


def test_liquidate__cured_auction__terminated(cm, books, make_keeper, admin, stranger, trader, operator):
    set_eth(cm, admin, "3500")
    cm.liquidator.start(stranger, books["trader"])
    cm.liquidator.start(stranger, books["operator"])
    cm.token("USDC").mint(admin, trader, "10000")
    cm.vault.deposit(trader, "USDC", "10000")  # back above the buffer
    k = make_keeper()
    k.discover()
    report = k.liquidate()
    ends = {(a.target, a.status) for a in report.actions if a.kind == "terminate"}
    assert ends == {(describe_account(books["trader"]), "sent")}
    assert not cm.liquidator.contract.in_auction(books["trader"])
    assert cm.liquidator.contract.in_auction(books["operator"])  # still below the buffer
    assert books["trader"] not in k.state.auctions


def test_liquidate__bid_below_threshold__waits(cm, books, make_keeper, admin, bidder):
    set_eth(cm, admin, "3500")
    k = make_keeper(bid_threshold="0.10")
    k.discover()
    k.liquidate()  # starts
    nonce = bidder.nonce
    report = k.liquidate()  # d(t) ~0.95: a 5% discount, under 10%
    bids = [a for a in report.actions if a.kind == "bid"]
    assert {a.status for a in bids} == {"skipped"} and len(bids) == 2
    assert all("below threshold" in a.detail for a in bids)
    assert bidder.nonce == nonce


def test_sweep__start_and_bid_until_nothing_is_liquidatable(
    cm, books, make_keeper, admin, bidder, lp, chain, create_account, maker, stranger
):
    """Three due accounts, one of them insolvent: rounds of the keeper (start, mark, bid,
    terminate) leave no account below maintenance and no auction running."""
    lp("100000")
    create_account(stranger, {"USDC": "14000"})
    cm.trade(maker, stranger, cm.markets.perp("ETH"), "10", "3000")  # solvent at 4,100
    set_eth(cm, admin, "4100")
    k = make_keeper(bid_threshold="0")
    k.discover()
    first = k.screen()
    assert sum(h.liquidatable for h in first) == 3
    assert any(h.equity <= 0 for h in first)  # trader and operator are insolvent
    bids = 0
    for _ in range(8):
        k.discover()
        report = k.liquidate()
        assert report.ok, report.summary()
        bids += report.count("sent", "bid")
        if not report.due and report.auctions == 0:
            break
        chain.mine(timestamp=chain.pending_timestamp + 120)  # the insolvent payment ramps up
        set_eth(cm, admin, "4100")  # keeps the feeds fresh
    else:
        pytest.fail(f"not swept: {report.summary()}")
    assert bids >= 3
    head = chain.blocks.head.number
    covered = list(cm.liquidator.contract.LossCovered.range(0, head + 1))
    assert len(covered) >= 1 and all(e.loss == e.fund_payout + e.socialized for e in covered)
    assert all(not h.liquidatable for h in k.screen())
    assert not any(cm.liquidator.contract.in_auction(a) for a in books.values())
    assert not cm.liquidator.contract.in_auction(aid(stranger))
    assert not cm.vault.contract.frozen(aid(bidder))


def test_liquidate__started_by_someone_else_meanwhile__skipped(cm, books, make_keeper, admin, stranger, keeper):
    set_eth(cm, admin, "3500")
    k = make_keeper()
    k.discover()
    cm.liquidator.start(stranger, books["trader"])  # after the keeper's discovery
    report = k.liquidate()
    actions = {a.target: (a.status, a.detail) for a in report.actions if a.kind == "start"}
    assert actions[describe_account(books["trader"])] == ("skipped", "liquidator: already in auction")
    assert actions[describe_account(books["operator"])] == ("sent", "")
    assert report.ok and books["trader"] in k.state.auctions
    with ape.reverts("liquidator: already in auction"):
        cm.liquidator.start(keeper, books["trader"])


def test_bid__bidder_short_of_margin__bids_what_it_can_afford(cm, books, make_keeper, admin, create_account, keeper):
    create_account(keeper, {"USDC": "200"}, subaccount=5)
    set_eth(cm, admin, "3500")
    k = make_keeper(bid_threshold="0", bidder_subaccount=5)
    k.discover()
    k.liquidate()  # starts
    report = k.liquidate()
    [bid] = [a for a in report.actions if a.kind == "bid" and a.target == describe_account(books["trader"])]
    assert bid.status == "sent", bid
    head = ape.chain.blocks.head.number
    [event] = cm.liquidator.contract.Bid.range(
        0, head + 1, search_topics={"account": books["trader"], "bidder": aid(keeper, 5)}
    )
    assert 0 < event.fraction < to_wad("0.05")  # a small slice, within the 200 USDC
    bidder = cm.engine.contract.margin(aid(keeper, 5))
    assert bidder.equity >= bidder.initial
    # with nothing to pay with, it does not try
    empty = make_keeper(bid_threshold="0", bidder_subaccount=9)
    skipped = [a for a in empty.liquidate().actions if a.kind == "bid"]
    assert skipped and {a.detail for a in skipped} == {"bidder cannot afford a bid"}
    with ape.reverts("liquidator: bidder under margin"):
        cm.liquidator.bid(keeper, books["operator"], "0.5", "1000", subaccount=9)


# ------------------------------------------------------------------ restarts, dry run, failures


def test_state_file__other_deployment_or_reset_chain__starts_afresh(cm, books, make_keeper, admin):
    k = make_keeper()
    k.discover()
    assert k.state.last_block >= 0
    raw = json.loads(k.config.state_file.read_text())
    raw["last_block_hash"] = "0x" + "00" * 32  # not this chain's block: a reset node or a reorg
    k.config.state_file.write_text(json.dumps(raw))
    rescanned = make_keeper()
    assert rescanned.state.last_block == -1 and rescanned.state.accounts == k.state.accounts
    assert rescanned.discover().from_block == 0
    raw["deployment"] = "0x000000000000000000000000000000000000dEaD"
    k.config.state_file.write_text(json.dumps(raw))
    other = make_keeper()
    assert other.state.accounts == set() and other.state.last_block == -1


def test_config__from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("CROSSMARGIN_KEEPER_DRY_RUN", "1")
    monkeypatch.setenv("CROSSMARGIN_KEEPER_BID_THRESHOLD", "none")
    monkeypatch.setenv("CROSSMARGIN_KEEPER_MAX_BID_FRACTION", "0.25")
    monkeypatch.setenv("CROSSMARGIN_KEEPER_STATE_FILE", str(tmp_path / "s.json"))
    monkeypatch.setenv("CROSSMARGIN_KEEPER_BATCH_SIZE", "32")
    config = KeeperConfig.from_env()
    assert config.dry_run and config.bid_threshold is None and config.batch_size == 32
    assert config.max_bid_fraction == Decimal("0.25") and config.state_file == tmp_path / "s.json"
    with pytest.raises(ValueError, match="max_bid_fraction"):
        KeeperConfig(max_bid_fraction="1.5")


def test_restart__same_state_file__does_not_double_act(cm, books, make_keeper, admin, keeper):
    set_eth(cm, admin, "3500")
    first = make_keeper()
    first.discover()
    assert len(started(first.liquidate())) == 2
    cursor = first.state.last_block
    nonce = keeper.nonce

    second = make_keeper()  # a restart: same state file
    assert second.state.accounts == first.state.accounts and second.state.auctions == first.state.auctions
    report = second.discover()
    assert report.from_block == cursor + 1 and report.new_accounts == []
    again = second.liquidate()
    assert again.ok and again.count(kind="start") == 0
    assert keeper.nonce == nonce


def test_restart__call_in_flight__not_sent_again(cm, books, make_keeper, admin, keeper, chain):
    """A start the node holds in its pool (sent, not mined when the keeper died) is in
    flight: not sent again; once mined, the restarted keeper marks it done from its receipt."""
    set_eth(cm, admin, "3500")
    k = make_keeper()
    k.discover()
    trader, nonce = books["trader"], keeper.nonce
    hint = k._hint(trader)
    chain.provider.auto_mine = False
    try:
        txn = chain.provider.network.ecosystem.create_transaction(
            chain_id=chain.chain_id,
            receiver=cm.liquidator.address,
            data=cm.liquidator.contract.start.encode_input(trader, hint),
            nonce=nonce,
            gas_limit=1_000_000,
            type=2,
            max_fee=10 * chain.provider.base_fee + 10**9,
            max_priority_fee=10**9,
        )
        raw = bytes(keeper.sign_transaction(txn).serialize_transaction())
        tx_hash = "0x" + bytes(chain.provider.web3.eth.send_raw_transaction(raw)).hex()
        k.state.sent[f"start:{trader:#x}"] = {"nonce": nonce, "status": "pending", "tx": tx_hash, "at": 0}
        k.save()
        restarted = make_keeper()
        flying = restarted.in_flight(f"start:{trader:#x}")
        assert flying is not None and flying["nonce"] == nonce
        chain.provider.mine()
    finally:
        chain.provider.auto_mine = True
    assert cm.liquidator.contract.in_auction(trader)
    restarted = make_keeper()
    entry = restarted.state.sent[f"start:{trader:#x}"]
    assert entry["status"] == "done" and entry["tx"] == tx_hash
    report = restarted.liquidate()
    assert started(report) == {describe_account(books["operator"])}
    assert keeper.nonce == nonce + 2


def test_restart__journaled_but_never_sent__started_by_the_next_sweep(cm, books, make_keeper, admin, keeper):
    """A keeper killed after journaling its starts but before they reached the node: the
    restarted keeper sees the nonces at or above the node's pending nonce were never sent,
    and starts every due account once.

    Fails on c1dcd68: both starts are skipped "in flight (nonce N)" forever (the journaled
    nonces are never used by another transaction)."""
    set_eth(cm, admin, "3500")
    k = make_keeper()
    k.discover()
    nonce = keeper.nonce
    for i, account in enumerate((books["trader"], books["operator"])):
        fake = "0x" + bytes([i + 1]).hex() * 32  # signed, never broadcast
        k.state.sent[f"start:{account:#x}"] = {"nonce": nonce + i, "status": "pending", "tx": fake, "at": 0}
    k.save()
    restarted = make_keeper()
    assert restarted.state.sent == {}  # never sent: dropped
    report = restarted.liquidate()
    assert started(report) == {describe_account(books["trader"]), describe_account(books["operator"])}
    assert keeper.nonce == nonce + 2
    again = make_keeper().liquidate()
    assert again.count(kind="start") == 0 and keeper.nonce == nonce + 2


def test_restart__mined_but_journal_pending__marked_done(cm, books, make_keeper, admin, keeper):
    """A keeper killed after its starts were mined but before it journaled their receipts:
    the restart marks each entry done (or reverted) from its receipt, leaving none pending.

    Fails on c1dcd68: the entries stay `pending` in the state file."""
    set_eth(cm, admin, "3500")
    k = make_keeper()
    k.discover()
    assert len(started(k.liquidate())) == 2
    raw = json.loads(k.config.state_file.read_text())
    blocks = {key: entry["block"] for key, entry in raw["sent"].items()}
    for entry in raw["sent"].values():  # as journaled before sending
        entry["status"] = "pending"
        del entry["block"]
    k.config.state_file.write_text(json.dumps(raw))
    restarted = make_keeper()
    assert {key: (e["status"], e["block"]) for key, e in restarted.state.sent.items()} == {
        key: ("done", block) for key, block in blocks.items()
    }
    saved = json.loads(k.config.state_file.read_text())["sent"]
    assert all(e["status"] == "done" for e in saved.values())


def test_dry_run__sends_nothing(cm, books, make_keeper, admin, keeper, tmp_path):
    set_eth(cm, admin, "3500")
    nonce = keeper.nonce
    k = make_keeper(dry_run=True)
    k.discover()
    report = k.liquidate()
    would = {a.target for a in report.actions if a.status == "would-send"}
    assert would == {describe_account(books["trader"]), describe_account(books["operator"])}
    assert keeper.nonce == nonce
    assert not any(cm.liquidator.contract.in_auction(a) for a in books.values())
    assert json.loads(k.config.state_file.read_text())["sent"] == {}


def test_dry_run__without_sender(cm, books, admin):
    set_eth(cm, admin, "3500")
    k = Keeper(cm, None, KeeperConfig())
    assert k.config.dry_run
    k.discover()
    assert {a.status for a in k.liquidate().actions} == {"would-send"}


class Flaky:
    """A contract whose `name` method fails like a dead RPC; everything else delegates."""

    def __init__(self, contract, name):
        self.contract, self.name, self.calls = contract, name, 0

    def __getattr__(self, attr):
        if attr != self.name:
            return getattr(self.contract, attr)
        flaky = self

        class Broken:
            def encode_input(self, *args):
                flaky.calls += 1
                raise ProviderError("connection refused")

            __call__ = encode_input

        return Broken()


def test_rpc_error_in_one_task__the_others_go_on(
    cm, books, make_keeper, admin, chain, list_option, maker, trader, monkeypatch
):
    call = list_option("ETH", True, "3000", days=1)
    cm.trade(maker, trader, call, "1", "100")
    set_eth(cm, admin, "3500")
    k = make_keeper()
    flaky = Flaky(cm.engine.contract, "margins")
    monkeypatch.setattr(cm.engine, "contract", flaky)
    chain.mine(timestamp=cm.markets.contract.instrument(call).expiry + 10)
    set_eth(cm, admin, "3600")  # the first round after expiry
    reports = {r.task: r for r in k.run_once()}
    assert list(reports) == ["discover", "liquidate", "settle", "refresh"]
    assert reports["discover"].ok
    failed = reports["liquidate"]
    assert not failed.ok and failed.errors == ["node error: ProviderError: connection refused"]
    assert flaky.calls == 9  # 3 tries of the call, in each of 3 tries of the task
    assert reports["settle"].ok and reports["settle"].count("sent", "settle") == 2
    assert cm.clearing.contract.option_size(books["trader"], call) == 0
    assert reports["refresh"].ok


def test_stale_oracle__screened_with_the_liquidation_reads_and_due_accounts_started(
    cm, books, make_keeper, admin, chain
):
    """A crash, then the ETH feeds go stale: every checked valuation reverts `oracle: stale
    price`, but the contracts liquidate through the liquidation reads (the last answer), and
    so does the keeper's screen: the accounts due at the last price are started, and the
    broken feed is reported once, not per account (issue 11, finding 10: on the keeper of
    c1dcd68 the sweep ended with that error and started nothing)."""
    set_eth(cm, admin, "3800")  # the trader (short 10) and the operator (short 1) fall under MM
    k = make_keeper()
    k.discover()
    chain.mine(timestamp=chain.pending_timestamp + 2 * 3600)  # past heartbeat + grace
    with pytest.raises(Exception, match="oracle: stale price"):
        cm.engine.contract.margin(books["trader"])
    report = k.liquidate()
    assert report.errors == [] and report.degraded == "oracle: stale price"
    assert report.screened == len(k.state.accounts)
    assert set(report.due) == {books["trader"], books["operator"]}
    assert cm.liquidator.contract.in_auction(books["trader"]) and cm.liquidator.contract.in_auction(books["operator"])


# ------------------------------------------------------------------ settlement


def test_settle__expired_option__both_sides_with_the_right_round(
    cm, books, make_keeper, admin, chain, list_option, maker, trader
):
    call = list_option("ETH", True, "3000", days=1)
    cm.trade(maker, trader, call, "2", "100")  # maker long 2 calls
    expiry = cm.markets.contract.instrument(call).expiry
    k = make_keeper()
    k.discover()
    assert k.state.holders[call] == {books["maker"], books["trader"]}
    chain.mine(timestamp=expiry + 10)
    waiting = k.settle()
    assert waiting.waiting == [call] and waiting.count("sent") == 0
    set_eth(cm, admin, "3250")  # first round after expiry
    chain.mine(timestamp=chain.pending_timestamp + 60)
    set_eth(cm, admin, "3900")  # a later round must not be used
    feed = cm.oracle.aggregator("ETH/USD")
    latest = feed.latestRoundData()[0]
    assert k.round_hint(cm.manifest.underlyings["ETH"], expiry) == latest - 1
    maker_cash = cm.vault.contract.cash_of(maker, 0)
    report = k.settle()
    assert report.ok and report.count("sent", "settle") == 2
    assert cm.markets.contract.instrument(call).settlement_price == to_wad("3250")
    assert cm.vault.contract.cash_of(maker, 0) - maker_cash == to_wad("500")
    assert cm.clearing.contract.option_size(books["trader"], call) == 0
    assert k.state.holders[call] == set()
    assert k.settle().actions == []  # nothing left


def test_settle__expired_future__both_sides_with_the_right_round(cm, books, make_keeper, admin, chain, maker, trader):
    """Futures are discovered from `InstrumentListed` (kind 4) and settled like options, with
    the round hint of the first round at or after expiry; the refresh task skips them."""
    future = cm.markets.list_future(admin, "ETH", chain.pending_timestamp + 86_400)
    cm.trade(maker, trader, future, "2", "3010")  # maker long 2
    expiry = cm.markets.contract.instrument(future).expiry
    k = make_keeper()
    k.discover()
    assert k.state.options[future].kind == 4
    assert k.state.holders[future] == {books["maker"], books["trader"]}
    refresh = k.refresh()
    assert refresh.ok and refresh.checked == 0
    chain.mine(timestamp=expiry + 10)
    waiting = k.settle()
    assert waiting.waiting == [future] and waiting.count("sent") == 0
    set_eth(cm, admin, "3250")  # first round after expiry
    chain.mine(timestamp=chain.pending_timestamp + 60)
    set_eth(cm, admin, "3900")  # a later round must not be used
    maker_cash = cm.vault.contract.cash_of(maker, 0)
    report = k.settle()
    assert report.ok and report.count("sent", "settle") == 2
    assert cm.markets.contract.instrument(future).settlement_price == to_wad("3250")
    assert cm.vault.contract.cash_of(maker, 0) - maker_cash == to_wad("480")
    assert cm.clearing.futures(trader) == [] and cm.clearing.futures(maker) == []
    assert k.state.holders[future] == set()
    assert k.settle().actions == []


def test_settle__first_round_after_expiry_opens_a_feed_phase__settled(
    cm, books, make_keeper, admin, chain, list_option, maker, trader
):
    """The feed moved to a new aggregator after expiry: the first round at or after it opens
    a phase. The keeper hints the old phase's last round and the router settles at the new
    phase's first. Fails on c1dcd68: `SettlementBlocked` (no hint is ever accepted)."""
    call = list_option("ETH", True, "3000", days=1)
    cm.trade(maker, trader, call, "2", "100")
    expiry = cm.markets.contract.instrument(call).expiry
    k = make_keeper()
    k.discover()
    feed = cm.oracle.aggregator("ETH/USD")
    last = feed.latestRoundData()[0]
    chain.mine(timestamp=expiry + 10)
    feed.push_phase(3250 * 10**8, expiry + 10, sender=admin)
    chain.mine(timestamp=chain.pending_timestamp + 60)
    set_eth(cm, admin, "3900")  # a later round of the new phase must not be used
    assert feed.latestRoundData()[0] == (1 << 64) | 2
    assert k.round_hint(cm.manifest.underlyings["ETH"], expiry) == last
    report = k.settle()
    assert report.ok and report.count("sent", "settle") == 2
    assert cm.markets.contract.instrument(call).settlement_price == to_wad("3250")


def test_round_hint__expiry_before_a_phase_change__round_of_the_old_phase(
    cm, books, make_keeper, admin, chain, list_option
):
    call = list_option("ETH", True, "3000", days=1)
    expiry = cm.markets.contract.instrument(call).expiry
    k = make_keeper()
    feed = cm.oracle.aggregator("ETH/USD")
    chain.mine(timestamp=expiry + 10)
    for _ in range(3):
        set_eth(cm, admin, "3100")
    settling = feed.latestRoundData()[0] - 2  # the first of the three
    feed.push_phase(3300 * 10**8, chain.pending_timestamp + 60, sender=admin)
    feed.push_at(3400 * 10**8, chain.pending_timestamp + 120, sender=admin)
    chain.mine(timestamp=chain.pending_timestamp + 200)
    hint = k.round_hint(cm.manifest.underlyings["ETH"], expiry)
    assert hint == settling
    assert cm.oracle.contract.settlement_price(
        cm.engine.contract.spot_key(cm.manifest.underlyings["ETH"]), expiry, hint
    ) == to_wad("3100")


def test_settle__feed_silent_after_expiry__fallback_after_the_delay(
    cm, books, make_keeper, admin, chain, list_option, maker, trader
):
    """No round after expiry: the keeper waits, then after the router's fallback delay
    hints 0 and the option settles at the last round before expiry. Fails on c1dcd68: the
    keeper waits forever (no round hint, and the router has no fallback)."""
    call = list_option("ETH", True, "3000", days=1)
    cm.trade(maker, trader, call, "2", "100")
    expiry = cm.markets.contract.instrument(call).expiry
    k = make_keeper()
    k.discover()
    set_eth(cm, admin, "3200")  # the last round before expiry
    chain.mine(timestamp=expiry + 10)
    assert k.settle().waiting == [call]
    chain.mine(timestamp=expiry + cm.oracle.contract.fallback_delay())
    assert k.round_hint(cm.manifest.underlyings["ETH"], expiry) == 0
    report = k.settle()
    assert report.ok and report.count("sent", "settle") == 2
    assert cm.markets.contract.instrument(call).settlement_price == to_wad("3200")


def test_settle__someone_else_settled_first__skipped(
    cm, books, make_keeper, admin, chain, list_option, maker, trader, stranger
):
    call = list_option("ETH", False, "3000", days=1)
    cm.trade(maker, trader, call, "1", "100")
    k = make_keeper(dry_run=True)
    k.discover()
    chain.mine(timestamp=cm.markets.contract.instrument(call).expiry + 10)
    set_eth(cm, admin, "2900")
    hint = k.round_hint(cm.manifest.underlyings["ETH"], cm.markets.contract.instrument(call).expiry)
    cm.clearing.settle(stranger, maker, call, hint)
    report = k.settle()
    assert [(a.target.split()[0], a.status) for a in report.actions] == [
        (describe_account(books["trader"]), "would-send")
    ]
    with ape.reverts("clearing: no position"):
        cm.clearing.settle(stranger, maker, call, hint)


# ------------------------------------------------------------------ risk arrays


def test_refresh__stores_stale_arrays_once(cm, books, make_keeper, admin, keeper, list_option, maker, trader, taker):
    engine = cm.engine.contract
    expiry = ape.chain.pending_timestamp + 30 * 86_400
    call, put = (
        cm.markets.list_option(admin, "ETH", c, k, expiry, 10**6) for c, k in ((True, "3200"), (False, "2800"))
    )
    # listed later: a put of the call's strike and expiry, a call of an earlier expiry
    pair = cm.markets.list_option(admin, "ETH", False, "3200", expiry, 10**6)
    earlier = list_option("ETH", True, "3400", days=7)
    held = [call, put, pair, earlier]
    unheld = list_option("ETH", True, "4000")
    for instrument in held[:2]:
        cm.trade(maker, trader, instrument, "1", "100")
    for instrument in held[2:]:
        cm.trade(maker, taker, instrument, "1", "100")
    k = make_keeper()
    k.discover()
    fresh = k.refresh()
    assert fresh.ok and fresh.checked == 4 and fresh.stale == [] and fresh.actions == []
    set_eth(cm, admin, "3100")  # a new round: every array is stale
    u = cm.manifest.underlyings["ETH"]
    before = engine.epoch(u)[2]
    report = k.refresh()
    # one batch, by expiry, then strike, a strike's call and put adjacent
    assert report.ok and report.stale == [earlier, put, call, pair] and report.stored == 4
    assert report.count("sent", "refresh") == 1
    epoch = engine.epoch(u)[2]
    assert epoch == before + 1
    assert [engine.risk_array(i)[0] for i in held] == [epoch] * 4
    assert engine.risk_array(unheld)[0] != epoch  # nobody holds it: no gas spent on it
    nonce = keeper.nonce
    assert k.refresh().stale == [] and keeper.nonce == nonce


# ------------------------------------------------------------------ price mover


def test_prices__random_walk_on_mock_feeds(cm, make_keeper, admin):
    k = make_keeper(sender=admin, seed=7, price_step=0.01)
    before = {name: cm.oracle.price(name) for name in ("ETH/USD", "BTC/USD")}
    report = k.move_prices()
    assert report.ok, report.errors
    assert set(report.prices) >= {"ETH/USD", "BTC/USD"}
    for name, price in before.items():
        after = cm.oracle.price(name)
        assert after == report.prices[name] and after != price
        assert abs(after / price - 1) < 0.06  # a 1% step, 6 sd


def test_prices__refused_off_devnets_and_without_pusher_rights(cm, make_keeper, admin, keeper, monkeypatch):
    assert "may not push" in make_keeper(sender=keeper).move_prices().errors[0]
    monkeypatch.setattr(price_mover, "DEV_NETWORKS", ("sepolia",))
    report = make_keeper(sender=admin).move_prices()
    assert report.errors == ["refused: the price mover only runs on devnets ('sepolia',), not 'local'"]
    assert report.actions == []


# ------------------------------------------------------------------ the model's what-if


def test_liquidation_distance__model_matches_the_chain(cm, books, make_keeper, admin):
    k = make_keeper()
    [distance] = k.liquidation_distance([books["trader"]])
    # equity 10,000 − 10·(S − 3,000) − fees against MM 1.6·S: S ≈ 3,448 (+14.9%)
    assert distance.underlying == "ETH" and 0.145 < distance.move < 0.1495
    engine = cm.engine.contract
    set_eth(cm, admin, int(3000 * (1 + float(distance.move) - 0.002)))
    assert engine.maintenance_health(books["trader"]) > 0
    set_eth(cm, admin, int(3000 * (1 + float(distance.move) + 0.002)))
    assert engine.maintenance_health(books["trader"]) < 0
    assert k.liquidation_distance([books["trader"]])[0].move == 0


# ------------------------------------------------------------------ Silverback bots


@pytest.fixture
def bot_module(cm, tmp_path, monkeypatch):
    """Imports a bot module of bots/ against this test's deployment (through a manifest
    file) and puts the given keeper in it; returns the module."""
    path = tmp_path / "manifest.json"
    cm.manifest.save(path)
    monkeypatch.setenv("CROSSMARGIN_MANIFEST", str(path))
    # Silverback's work-around for ad-hoc connections: the bot uses the provider already
    # connected (the test's anvil) instead of connecting a new one for the network
    monkeypatch.setenv("SILVERBACK_NETWORK_CHOICE", "adhoc")

    def _import(name: str, keeper: Keeper):
        sys.modules.pop(f"bots.{name}", None)
        module = importlib.import_module(f"bots.{name}")
        module.keeper.set(keeper)
        return module

    return _import


def test_bot_liquidation__block_and_event_handlers_run_the_keeper(
    cm, books, make_keeper, admin, bot_module, chain, stranger
):
    k = make_keeper()
    module = bot_module("liquidation", k)
    assert type(module.bot).__name__ == "SilverbackBot"
    assert module.startup()["known"] == len(books) and k.state.accounts >= set(books.values())
    set_eth(cm, admin, "3500")
    # an auction another keeper starts is live for this one from its event
    receipt = cm.liquidator.start(stranger, books["trader"])
    [log] = receipt.decode_logs(cm.liquidator.contract.AuctionStarted)
    assert module.on_auction_started(log) == {"auctions": 1}
    metrics = module.on_block(chain.blocks.head)
    assert (metrics["due"], metrics["auctions"], metrics["sent"], metrics["errors"]) == (2, 1, 1, 0)
    assert cm.liquidator.auction(books["operator"]).keeper == k.sender_account.address


def test_bot_settlement_and_risk__handlers_run_the_keeper(
    cm, books, make_keeper, admin, bot_module, chain, list_option, maker, trader
):
    call = list_option("ETH", True, "3000", days=1)
    cm.trade(maker, trader, call, "1", "100")
    settlement = bot_module("settlement", make_keeper(state_file=None))
    risk = bot_module("risk", make_keeper(state_file=None))
    set_eth(cm, admin, "3100")  # stale arrays
    assert risk.on_block(chain.blocks.head)["stale"] == 1
    assert cm.engine.contract.risk_array(call)[0] == cm.engine.contract.epoch(cm.manifest.underlyings["ETH"])[2]
    chain.mine(timestamp=cm.markets.contract.instrument(call).expiry + 1)
    set_eth(cm, admin, "3200")
    metrics = settlement.on_block(chain.blocks.head)
    assert (metrics["sent"], metrics["errors"]) == (2, 0)
    assert cm.clearing.contract.option_size(books["trader"], call) == 0
    risk.keeper.set(make_keeper(sender=admin, state_file=None, seed=3))
    before = cm.oracle.price("ETH/USD")
    assert risk.move_prices()["sent"] >= 2  # the spot feeds, and the stale ones re-pushed
    assert cm.oracle.price("ETH/USD") != before
