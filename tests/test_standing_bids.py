"""Standing bids on the liquidation auction (`Liquidator.register`, `cancel`, `execute`):
each rule (threshold, fraction and cash per auction, underlyings, insolvent at once, the
executor's tip, the buyer's initial margin that skips instead of reverting) and every bad
input with its exact reason. The chain is checked against `crossmargin/model/auction.py`.

The book (conftest `book`): `trader` short 10 ETH perp at 3,000 with 10,000 USDC; at 3,500
it is solvent below MM, at 4,100 insolvent. The standing bidder is `operator` (100k USDC),
the executor `keeper`.
"""

import ape
import pytest
from prices import set_eth

from crossmargin.model.auction import (
    AuctionParams,
    StandingBid,
    StandingBidRefused,
    due_elapsed,
    multiplier,
    solvent_terms,
    standing_terms,
)
from crossmargin.units import WAD, account_id, key, to_wad

NOT_OWNER = "ownable: caller is not the owner"
TIP = to_wad(1)


@pytest.fixture
def standing(create_account, operator):
    """The standing bidder's account: 100k USDC (subaccount 0 of `operator`)."""
    create_account(operator, {"USDC": "100000"})
    return account_id(operator.address, 0)


def cash(vault, account: int) -> int:
    return vault.account_state(account)[0]


def start_at(cm, chain, admin, keeper, book, price="3500"):
    set_eth(cm, admin, price)
    return cm.liquidator.start(keeper, book)


def used(cm, book, bidder):
    return tuple(cm.liquidator.contract.standing_used(book, bidder))


# ------------------------------------------------------------------ register / cancel


def test_register__stores_and_emits(cm, operator):
    receipt = cm.liquidator.register(operator, "0.8", "0.25", "5000", underlyings=0, subaccount=3)
    bidder = account_id(operator.address, 3)
    [event] = receipt.decode_logs(cm.liquidator.contract.StandingBidSet)
    assert (event.bidder, event.multiplier, event.fraction, event.max_cash, event.underlyings) == (
        bidder,
        to_wad("0.8"),
        to_wad("0.25"),
        to_wad(5000),
        0,
    )
    view = cm.liquidator.standing_bid(bidder)
    assert (view.multiplier, view.fraction, view.max_cash, view.underlyings) == (
        to_wad("0.8"),
        to_wad("0.25"),
        to_wad(5000),
        0,
    )


def test_register__multiplier_above_start__reverts(cm, operator):
    with ape.reverts("liquidator: multiplier above start"):
        cm.liquidator.register(operator, "0.950000000000000001", "0.1", "100")


@pytest.mark.parametrize("fraction, max_cash", [("0", "100"), ("0.1", "0")])
def test_register__zero_size__reverts(cm, operator, fraction, max_cash):
    with ape.reverts("liquidator: zero size"):
        cm.liquidator.register(operator, "0.8", fraction, max_cash)


def test_register__bad_fraction_or_out_of_bounds__reverts(cm, operator):
    with ape.reverts("liquidator: bad fraction"):
        cm.liquidator.register(operator, "0.8", "1.000000000000000001", "100")
    with ape.reverts("liquidator: out of bounds"):
        cm.liquidator.contract.register(0, to_wad("0.8"), to_wad("0.1"), 2**96, 0, sender=operator)
    with ape.reverts("liquidator: out of bounds"):
        cm.liquidator.contract.register(0, to_wad("0.8"), to_wad("0.1"), 1, 2**32, sender=operator)


def test_cancel__another_owner__reverts(cm, operator, stranger, standing):
    cm.liquidator.register(operator, "0.8", "0.1", "1000")
    with ape.reverts("liquidator: not bid owner"):
        cm.liquidator.cancel(stranger, standing)


def test_cancel__no_bid__reverts_then_cancels(cm, operator, standing):
    with ape.reverts("liquidator: no standing bid"):
        cm.liquidator.cancel(operator, standing)
    cm.liquidator.register(operator, "0.8", "0.1", "1000")
    receipt = cm.liquidator.cancel(operator, standing)
    assert [e.bidder for e in receipt.decode_logs(cm.liquidator.contract.StandingBidCancelled)] == [standing]
    assert not cm.liquidator.standing_bid(standing).active


# ------------------------------------------------------------------ execute: reverts


def test_execute__no_auction__reverts(cm, book, operator, keeper, standing):
    cm.liquidator.register(operator, "0.95", "0.1", "1000")
    with ape.reverts("liquidator: no auction"):
        cm.liquidator.execute(keeper, book, standing)


def test_execute__no_standing_bid__reverts(cm, book, admin, keeper, chain, standing):
    start_at(cm, chain, admin, keeper, book)
    with ape.reverts("liquidator: no standing bid"):
        cm.liquidator.execute(keeper, book, standing)


def test_execute__before_the_threshold__reverts(cm, book, admin, keeper, operator, chain, standing):
    cm.liquidator.register(operator, "0.8", "0.1", "10000")
    start = start_at(cm, chain, admin, keeper, book)
    due = due_elapsed(StandingBid(to_wad("0.8"), 0, 0))
    chain.mine(timestamp=start.timestamp + due - 2)
    with ape.reverts("liquidator: above standing multiplier"):
        cm.liquidator.execute(keeper, book, standing)


def test_execute__bidder_in_auction__reverts(cm, create_account, book, admin, keeper, maker, operator, standing):
    """The standing bidder's own account is in auction: its bid cannot run."""
    cm.trade(maker, operator, cm.markets.perp("ETH"), "40", "3000")  # MM about 19,200 on 100k
    cm.liquidator.register(operator, "0.95", "0.1", "10000")
    set_eth(cm, admin, "5500")
    for account in (book, standing):
        cm.liquidator.start(keeper, account)
    with ape.reverts("liquidator: bidder in auction"):
        cm.liquidator.execute(keeper, book, standing)


def test_execute__bidder_is_the_account__reverts(cm, book, admin, keeper, trader, chain):
    cm.liquidator.register(trader, "0.95", "0.1", "10000")
    start_at(cm, chain, admin, keeper, book)
    with ape.reverts("liquidator: bidder is liquidated"):
        cm.liquidator.execute(keeper, book, book)


def test_fill_standing__only_self(cm, book, stranger):
    with ape.reverts("liquidator: not self"):
        cm.liquidator.contract.fill_standing(book, 1, 1, stranger, sender=stranger)


def test_execute__underlying_outside_the_mask__reverts(cm, book, admin, keeper, operator, standing):
    btc = cm.engine.contract.underlying_ids(key("BTC"))
    eth = cm.engine.contract.underlying_ids(key("ETH"))
    cm.liquidator.register(operator, "0.95", "0.1", "10000", underlyings=1 << btc)
    set_eth(cm, admin, "3500")
    cm.liquidator.start(keeper, book)
    with ape.reverts("liquidator: underlying not in bid"):
        cm.liquidator.execute(keeper, book, standing)
    cm.liquidator.register(operator, "0.95", "0.1", "10000", underlyings=(1 << btc) | (1 << eth))
    taken, _price = cm.liquidator.contract.execute.call(book, standing, sender=keeper)
    assert taken == to_wad("0.1")


# ------------------------------------------------------------------ execute: the rule


def test_execute__at_the_threshold__buys_like_the_model_and_tips(
    cm, vault, book, admin, keeper, operator, chain, standing
):
    bid = StandingBid(to_wad("0.8"), to_wad("0.1"), to_wad(10000))
    cm.liquidator.register(operator, "0.8", "0.1", "10000")
    start = start_at(cm, chain, admin, keeper, book)
    chain.mine(timestamp=start.timestamp + due_elapsed(bid))  # the first due second
    executor = account_id(keeper.address, 0)
    before = {a: cash(vault, a) for a in (standing, executor, book)}
    receipt = cm.liquidator.execute(keeper, book, standing)
    elapsed = receipt.timestamp - start.timestamp
    assert multiplier(elapsed) <= bid.multiplier < multiplier(due_elapsed(bid) - 1)
    [b] = receipt.decode_logs(cm.liquidator.contract.Bid)
    [done] = receipt.decode_logs(cm.liquidator.contract.StandingBidExecuted)
    terms = standing_terms(bid, 0, 0, b.equity, b.maintenance, elapsed)
    assert (b.bidder, b.fraction, b.price, b.fee) == (standing, terms.fraction, terms.price, terms.fee)
    assert (done.account, done.bidder, done.executor, done.tip) == (book, standing, keeper.address, TIP)
    moved = before[book] * terms.fraction // WAD
    # the keeper started the auction: it also gets the starter's tip out of the fee
    starter_tip = min(to_wad(5), terms.fee // 10**14 * 10**14)
    assert cash(vault, standing) == before[standing] + moved - terms.price - TIP
    assert cash(vault, executor) == before[executor] + TIP + starter_tip
    assert used(cm, book, standing) == (terms.fraction, terms.price)


def test_execute__fraction_per_auction__then_used(cm, book, admin, keeper, operator, chain, standing, stranger):
    cm.liquidator.register(operator, "0.95", "0.05", "100000")
    start_at(cm, chain, admin, keeper, book)
    receipt = cm.liquidator.execute(stranger, book, standing)
    [b] = receipt.decode_logs(cm.liquidator.contract.Bid)
    assert b.fraction == to_wad("0.05")
    with ape.reverts("liquidator: standing bid used"):
        cm.liquidator.execute(stranger, book, standing)
    # a larger fraction later: only what is left of it
    cm.liquidator.register(operator, "0.95", "0.08", "100000")
    [b] = cm.liquidator.execute(stranger, book, standing).decode_logs(cm.liquidator.contract.Bid)
    assert b.fraction == to_wad("0.03")
    assert used(cm, book, standing)[0] == to_wad("0.08")


def test_execute__cash_per_auction__cuts_the_fraction(cm, book, admin, keeper, operator, chain, standing, stranger):
    cm.liquidator.register(operator, "0.95", "1", "100")
    start = start_at(cm, chain, admin, keeper, book)
    receipt = cm.liquidator.execute(stranger, book, standing)
    [b] = receipt.decode_logs(cm.liquidator.contract.Bid)
    bid = StandingBid(to_wad("0.95"), WAD, to_wad(100))
    terms = standing_terms(bid, 0, 0, b.equity, b.maintenance, receipt.timestamp - start.timestamp)
    assert b.fraction == terms.fraction < to_wad("0.1") and b.price == terms.price <= to_wad(100)
    assert to_wad(100) - b.price < to_wad("0.01")  # it spends (nearly) all its cash
    with ape.reverts("liquidator: standing bid used"):
        cm.liquidator.execute(stranger, book, standing)


def test_execute__registered_again_with_less_cash_than_paid__used(
    cm, book, admin, keeper, operator, chain, standing, stranger
):
    cm.liquidator.register(operator, "0.95", "1", "300")
    start_at(cm, chain, admin, keeper, book)
    cm.liquidator.execute(stranger, book, standing)
    assert used(cm, book, standing)[1] > to_wad(200)
    cm.liquidator.register(operator, "0.95", "1", "200")
    with ape.reverts("liquidator: standing bid used"):
        cm.liquidator.execute(stranger, book, standing)


def test_execute__buyer_under_margin__skipped_nothing_moves(cm, vault, clearing, book, admin, keeper, operator, chain):
    """A standing bidder with 200 USDC cannot carry a tenth of the book: the execution is
    skipped (event, no revert), and no balance, position or usage changes; no tip."""
    cm.token("USDC").mint(admin, operator, "200")
    cm.vault.approve(operator, "USDC")
    cm.vault.deposit(operator, "USDC", "200", 1)
    poor = account_id(operator.address, 1)
    cm.liquidator.register(operator, "0.95", "0.1", "10000", subaccount=1)
    start_at(cm, chain, admin, keeper, book)
    executor = account_id(keeper.address, 0)
    u = cm.manifest.underlyings["ETH"]
    before = [cash(vault, a) for a in (poor, executor, book)], clearing.perp_position(book, u).size
    taken, price = cm.liquidator.contract.execute.call(book, poor, sender=keeper)
    assert (taken, price) == (0, 0)
    receipt = cm.liquidator.execute(keeper, book, poor)
    [skipped] = receipt.decode_logs(cm.liquidator.contract.StandingBidSkipped)
    assert (skipped.account, skipped.bidder, skipped.executor, skipped.reason) == (
        book,
        poor,
        keeper.address,
        "bidder under margin",
    )
    assert receipt.decode_logs(cm.liquidator.contract.Bid) == []
    assert receipt.decode_logs(cm.liquidator.contract.StandingBidExecuted) == []
    after = [cash(vault, a) for a in (poor, executor, book)], clearing.perp_position(book, u).size
    assert after == before
    assert used(cm, book, poor) == (0, 0)


def test_execute__insolvent__at_once_and_paid(cm, vault, book, admin, keeper, operator, chain, standing, insure):
    """An insolvent auction pays the bidder: a standing bid executes at once, whatever its
    multiplier, and spends none of its cash."""
    insure("50000")
    cm.liquidator.register(operator, "0", "0.5", "1")
    start = start_at(cm, chain, admin, keeper, book, "4100")
    receipt = cm.liquidator.execute(keeper, book, standing)
    [b] = receipt.decode_logs(cm.liquidator.contract.Bid)
    terms = standing_terms(
        StandingBid(0, to_wad("0.5"), to_wad(1)),
        0,
        0,
        b.equity,
        b.maintenance,
        0,
        since_insolvent=receipt.timestamp - start.timestamp,
    )
    assert b.equity < 0 and (b.fraction, b.price) == (terms.fraction, terms.price) and b.price < 0
    assert used(cm, book, standing) == (to_wad("0.5"), 0)
    assert cash(vault, account_id(keeper.address, 0)) >= TIP


def test_execute__dust_auction__slice_below_the_tip__reverts(
    cm, admin, maker, trader, operator, stranger, create_account
):
    """fails on 6c327b7 (audit, stop 23): a standing bid had no floor on what it bought, and
    its executor is paid a flat tip by the bidder. Whoever ran a 5-USD account into an
    auction executed every standing bid against it: the bidder gained 5% of 5 USD and paid
    1 USD. The execution now reverts, nothing moved, unless the slice is worth more at the
    mark than its price and the tip."""
    create_account(maker, {"USDC": "1000000"})
    create_account(trader, {"USDC": "100"})
    create_account(operator, {"USDC": "100000"})
    cm.liquidator.register(operator, "0.95", "1", "10000")
    cm.trade(maker, trader, cm.markets.perp("ETH"), "0.1", "3000")
    set_eth(cm, admin, "3950")
    dust = account_id(trader.address, 0)
    m = cm.engine.contract.margin(dust)
    assert 0 < m.equity < m.maintenance
    bidder = account_id(operator.address, 0)
    cm.liquidator.start(stranger, dust)
    before = cm.vault.contract.account_state(bidder)
    with ape.reverts("liquidator: standing slice below tip"):
        cm.liquidator.execute(stranger, dust, bidder)
    assert cm.vault.contract.account_state(bidder) == before


def test_execute__new_auction_starts_fresh(cm, book, admin, keeper, operator, chain, standing, trader):
    cm.liquidator.register(operator, "0.95", "0.05", "100000")
    start_at(cm, chain, admin, keeper, book)
    cm.liquidator.execute(keeper, book, standing)
    cm.token("USDC").mint(admin, trader, "10000")
    cm.vault.deposit(trader, "USDC", "10000")  # back above the buffer
    cm.liquidator.terminate(keeper, book)
    assert used(cm, book, standing) == (0, 0)
    chain.mine(timestamp=chain.pending_timestamp + 5)
    set_eth(cm, admin, "4600")  # below MM again, still solvent
    cm.liquidator.start(keeper, book)
    [b] = cm.liquidator.execute(keeper, book, standing).decode_logs(cm.liquidator.contract.Bid)
    assert b.fraction == to_wad("0.05")


def test_execute__while_paused__goes_through(cm, vault, book, admin, keeper, operator, guardian, standing):
    cm.liquidator.register(operator, "0.95", "0.1", "10000")
    start_at(cm, None, admin, keeper, book)
    vault.pause(sender=guardian)
    receipt = cm.liquidator.execute(keeper, book, standing)
    assert receipt.decode_logs(cm.liquidator.contract.Bid)[0].fraction == to_wad("0.1")


def test_model__standing_terms_refusals():
    p = AuctionParams()
    bid = StandingBid(to_wad("0.8"), to_wad("0.1"), to_wad(100))
    with pytest.raises(StandingBidRefused, match="above standing multiplier"):
        standing_terms(bid, 0, 0, to_wad(5000), to_wad(5600), 0, p=p)
    with pytest.raises(StandingBidRefused, match="standing bid used"):
        standing_terms(bid, to_wad("0.1"), 0, to_wad(5000), to_wad(5600), 900, p=p)
    with pytest.raises(StandingBidRefused, match="account above buffer"):
        standing_terms(bid, 0, 0, to_wad(7000), to_wad(5600), 900, p=p)
    # a 5-USD account at d = 0.95: 0.25 USD of discount against the 1-USD tip
    with pytest.raises(StandingBidRefused, match="standing slice below tip"):
        standing_terms(StandingBid(to_wad("0.95"), WAD, to_wad(10000)), 0, 0, to_wad(5), to_wad(6), 0, p=p)
    # a direct bid on the same slice has no such floor: it pays no tip
    assert solvent_terms(to_wad(5), to_wad(6), WAD, 0, p).fraction == WAD


# ------------------------------------------------------------------ the tip


def test_set_standing_tip__bounds_owner_event(cm, admin, stranger):
    liquidator = cm.liquidator.contract
    assert liquidator.standing_tip() == TIP
    with ape.reverts(NOT_OWNER):
        liquidator.set_standing_tip(0, sender=stranger)
    with ape.reverts("liquidator: out of bounds"):
        liquidator.set_standing_tip(to_wad(100) + 1, sender=admin)
    receipt = liquidator.set_standing_tip(to_wad(100), sender=admin)
    assert [e.tip for e in receipt.decode_logs(liquidator.StandingTipSet)] == [to_wad(100)]
    assert liquidator.standing_tip() == to_wad(100)


# ------------------------------------------------------------------ the keeper


def test_keeper__executes_due_standing_bids_before_its_own_and_reports_them(
    cm, create_account, book, admin, keeper, operator, chain, standing, tmp_path
):
    """The keeper learns standing bids from events; once an auction runs, its sweep executes
    the due ones (one executed, one skipped: its buyer under IM, found by an `eth_call` and
    not sent), leaves the one
    not yet due, and only then bids itself."""
    from crossmargin.keeper import Keeper, KeeperConfig

    create_account(keeper, {"USDC": "1000000"})
    cm.token("USDC").mint(admin, operator, "200")
    cm.vault.deposit(operator, "USDC", "200", 1)
    poor = account_id(operator.address, 1)
    cm.liquidator.register(operator, "0.95", "0.1", "10000")
    cm.liquidator.register(operator, "0.95", "0.1", "10000", subaccount=1)
    cm.liquidator.register(operator, "0.5", "0.1", "10000", subaccount=2)
    k = Keeper(cm, keeper, KeeperConfig(state_file=tmp_path / "keeper.json", retry_delay=0.01, bid_threshold=0))
    k.discover()
    assert k.state.standing == {standing, poor, account_id(operator.address, 2)}
    set_eth(cm, admin, "3500")
    k.liquidate()  # starts the auction
    chain.mine(timestamp=chain.pending_timestamp + 30)
    k.discover()
    report = k.liquidate()
    actions = [(a.kind, a.status, a.detail) for a in report.actions if a.kind in ("standing", "bid")]
    kinds = [kind for kind, _status, _detail in actions]
    assert kinds[:2] == ["standing", "standing"] and "standing" not in kinds[2:]
    by_status = {status: detail for kind, status, detail in actions if kind == "standing"}
    assert by_status["sent"].startswith("executed 0.1000 at")
    assert by_status["skipped"] == "bidder under margin (preflight)"  # not sent: no gas for no tip
    assert report.count("skipped", "standing") == 1 and report.count("sent", "standing") == 1
    assert used(cm, book, standing)[0] == to_wad("0.1") and used(cm, book, poor) == (0, 0)
    # cancelled bids leave the keeper's list at the next read
    cm.liquidator.cancel(operator, poor)
    k.discover()
    assert poor not in k.state.standing


def test_set_standing_tip__cents_and_kept_by_set_terms(cm, admin):
    """The tip shares the `terms` word (in 0.01 USD): set_terms keeps it, and it keeps them."""
    liquidator = cm.liquidator.contract
    liquidator.set_standing_tip(to_wad("1.234"), sender=admin)
    assert liquidator.standing_tip() == to_wad("1.23")
    liquidator.set_terms(to_wad("2"), to_wad("0.2"), to_wad(1000), to_wad(10**6), sender=admin)
    assert liquidator.standing_tip() == to_wad("1.23")
    assert AuctionParams.read(liquidator).small_account == to_wad(10**6)
    liquidator.set_standing_tip(to_wad(100), sender=admin)
    p = AuctionParams.read(liquidator)
    assert (p.buffer, p.keeper_tip, p.small_account) == (to_wad("2"), to_wad(1000), to_wad(10**6))


def test_status__lists_standing_bids_per_auction(cm, book, admin, keeper, operator, standing, tmp_path, run_status):
    """`ape run status` (in-process) shows each auction's standing bids, `*` once reached."""
    from crossmargin.keeper import describe_account

    cm.liquidator.register(operator, "0.95", "0.25", "1000")
    cm.liquidator.register(operator, "0.5", "0.1", "1000", subaccount=2)
    start_at(cm, None, admin, keeper, book)
    out = run_status(width=400, top=5, state_file=tmp_path / "none.json")
    assert "live auctions (1, 2 standing bids)" in out, out
    assert f"{describe_account(standing)} ≤0.95* (0.25 left)" in out, out
    assert f"{describe_account(account_id(operator.address, 2))} ≤0.50 (0.10 left)" in out, out
