"""Leaving a charged side ahead of a visible deleveraging (issue: the position dodge).

An insolvent auction is public for up to an hour before its bid charges the other side of
the account's losing perps and futures. A holder on that side who closes against a holder
on the other (the open interest shrinks) would leave the whole charge to those who stay.
The exit charge makes leaving worthless: when the loss becomes known each side it will
charge gets a pending charge per unit (the most it can owe), and a trade that shrinks a
position on that side pays it into the exit charges; the bid spends them first.

The book (conftest `book`): `trader` short 10 ETH perp at 3,000 on 10,000 USDC against
`maker`'s long; `operator` long 10 more against `taker`. At 4,100 the trader's equity is
about -1,000.
"""

import json
from decimal import Decimal

import ape
import pytest
from ape import chain
from hypothesis import given, settings
from hypothesis import strategies as st
from prices import set_eth
from sizes import examples
from test_preview import as_tuples, margin_tuple, wad_trades

from crossmargin.model import auction as model
from crossmargin.model import clearing as model_clearing
from crossmargin.model import margin as margin_model
from crossmargin.units import WAD, account_id, from_wad, to_wad


@pytest.fixture
def pair(cm, book, create_account, operator, taker, insure):
    """The second long (operator) and its short (taker): open interest 20."""
    insure("10")  # far too little
    create_account(operator, {"USDC": "1000000"})
    create_account(taker, {"USDC": "1000000"})
    cm.trade(operator, taker, cm.markets.perp("ETH"), "10", "3000")
    return book


def test_closing_together_ahead_of_the_bid__the_stayer_pays_no_more_than_its_share(
    cm, vault, clearing, pair, bidder, admin, stranger, maker, operator, taker
):
    """The dodge: while the insolvent short's auction is public, a long on the side it will
    charge (operator) and a short (taker) close against each other, halving the open
    interest. On the code before the exit charge the long that stayed (maker) then paid the
    whole deficit, twice its share; now the leaver pays at least its share on the way out
    and the stayer at most its share."""
    u = cm.manifest.underlyings["ETH"]
    perp = cm.markets.perp("ETH")
    set_eth(cm, admin, "4100")
    cm.liquidator.start(stranger, pair)
    stayer = account_id(maker.address, 0)
    before = clearing.perp_position(stayer, u)
    close = cm.trade(operator, taker, perp, "-10", "4100")  # both leave
    receipt = cm.liquidator.bid(bidder, pair, "1", "0")
    [covered] = receipt.decode_logs(cm.liquidator.contract.LossCovered)
    assert covered.loss == covered.fund_payout + covered.deleveraged + covered.socialized
    assert covered.socialized == 0
    deficit = covered.loss - covered.fund_payout
    fair = deficit * 10 // 20  # each long's share had both stayed (open interest 20 when known)
    stayer_paid = clearing.perp_position(stayer, u).cost - before.cost
    assert stayer_paid <= fair + 1
    [exit_charge] = close.decode_logs(clearing.ExitCharged)
    assert exit_charge.account == account_id(operator.address, 0) and exit_charge.instrument == perp
    assert exit_charge.amount >= fair


def marked_positions(cm, clearing, account: int, spot: int) -> list:
    """The insolvent account's perps as the model reads them."""
    out = []
    for u in (cm.manifest.underlyings["ETH"],):
        p = clearing.perp_position(account, u)
        perp = cm.markets.perp("ETH")
        out.append(model.LinearPosition(perp, p.size, p.cost, spot, cm.markets.contract.open_interest(perp)))
    return out


def test_mark__pending_charge_per_unit__to_the_wei(cm, vault, clearing, pair, admin, stranger):
    """The start of an insolvent auction marks the side it may charge: its share of what the
    fund cannot cover of the reserve, per unit of open interest, rounded up; the other side
    and markets the account does not lose on get nothing."""
    perp = cm.markets.perp("ETH")
    set_eth(cm, admin, "4100")
    positions = marked_positions(cm, clearing, pair, to_wad(4100))
    receipt = cm.liquidator.start(stranger, pair)
    reserve = cm.liquidator.contract.reserved(pair)
    covered = cm.fund.contract.totalAssets() * 10**12
    [pending] = receipt.decode_logs(clearing.ChargePending)
    [expected] = model.mark(positions, reserve - covered)
    assert model.Charge(**pending.event_arguments) == expected
    assert (pending.instrument, pending.longs, pending.open_interest) == (perp, True, to_wad(20))
    # the share is capped by the account's loss on the perp, then spread per unit rounded up
    assert expected.amount == min(reserve - covered, model.linear_loss(positions[0]))
    assert pending.per_unit * 20 >= pending.amount
    assert clearing.pending_charge(perp) == pending.per_unit  # longs (low half); shorts none
    assert clearing.collected(perp) == 0 and vault.exit_charges() == 0


def test_exit_charge__only_units_taken_off_the_marked_side_pay(
    cm, vault, clearing, pair, admin, stranger, maker, operator, taker, keeper, create_account
):
    """Partly closing a long pays per unit closed; the short closing on the other side pays
    nothing; a new long pays nothing; a long flipping short pays for its long units only.
    Each charge is debited from the leaver and held by the vault as exit charges."""
    perp = cm.markets.perp("ETH")
    set_eth(cm, admin, "4100")
    cm.liquidator.start(stranger, pair)
    per_unit = clearing.pending_charge(perp) & (2**128 - 1)
    assert per_unit > 0
    leaver = account_id(operator.address, 0)
    receipt = cm.trade(operator, taker, perp, "-4", "4100")  # operator 10 -> 6, taker -10 -> -6
    [paid] = receipt.decode_logs(clearing.ExitCharged)
    assert (paid.account, paid.instrument) == (leaver, perp)
    assert paid.amount == model.exit_charge(to_wad(10), -to_wad(4), per_unit, 0) == 4 * per_unit
    [entry] = [e for e in receipt.decode_logs(vault.CashSettled) if e.account == 0]
    assert entry.delta == paid.amount
    assert vault.exit_charges() == clearing.collected(perp) == paid.amount
    create_account(keeper, {"USDC": "100000"})
    receipt = cm.trade(keeper, taker, perp, "2", "4100")  # a new long: nothing to pay
    assert receipt.decode_logs(clearing.ExitCharged) == []
    receipt = cm.trade(operator, keeper, perp, "-10", "4100")  # operator 6 -> -4: 6 units leave
    [flip] = receipt.decode_logs(clearing.ExitCharged)
    assert flip.account == leaver and flip.amount == model.exit_charge(to_wad(6), -to_wad(10), per_unit, 0)
    assert flip.amount == 6 * per_unit
    assert vault.exit_charges() == clearing.collected(perp) == paid.amount + flip.amount
    # the short the maker never had: the maker's long stays, nothing paid by it
    assert clearing.perp_position(account_id(maker.address, 0), cm.manifest.underlyings["ETH"]).size == to_wad(10)


def test_preview__a_closing_fill_pays_its_exit_charge__equal_to_the_fill_to_the_wei(
    cm, vault, clearing, pair, admin, stranger, operator, taker, frozen_clock
):
    """The margin preview (and so the SDK's preflight) counts the exit charge a closing
    fill pays while a charge is pending: the Lens and its model twin equal the leaver's
    margin and cash after the fill to the wei. Without it both were off by the charge."""
    perp = cm.markets.perp("ETH")
    set_eth(cm, admin, "4100")
    cm.liquidator.start(stranger, pair)
    per_unit = clearing.pending_charge(perp) & (2**128 - 1)
    leaver = account_id(operator.address, 0)
    raw = wad_trades(cm, [(perp, "-4", "4100")])  # the operator makes the fill below
    block = chain.blocks.head.number
    preview = cm.lens.preview(leaver, as_tuples(raw), block_id=block)
    state, underlyings, params, now = cm.model_after(leaver, raw, block)

    receipt = cm.trade(operator, taker, perp, "-4", "4100")
    [paid] = receipt.decode_logs(clearing.ExitCharged)
    assert paid.amount == 4 * per_unit > 0
    after = cm.engine.contract.margin(leaver)
    assert margin_tuple(preview.after) == margin_tuple(after)
    assert tuple(margin_model.margin(state, underlyings, params, now)) == margin_tuple(after)
    [moved] = [e.delta for e in receipt.decode_logs(vault.CashSettled) if e.account == leaver]
    assert preview.cash == moved


def test_preview_model__a_future_leaving_a_marked_side_pays_that_sides_charge():
    """The model twin of the preview charges a future as the clearinghouse does: a long
    selling 2 of its 3 units pays 2 units of the longs' charge (7 USD), a short buying 1
    back 1 unit of the shorts' (5 USD), and a new position nothing."""
    future = model_clearing.Listing(margin_model.FUTURE, 1, expiry=2**31, pending=7 * WAD | (5 * WAD << 128))
    listings = {9: future}

    def cash_after(size: int, trade: int) -> int:
        held = () if size == 0 else (margin_model.FuturePosition(9, 1, size, size * 2_000, 2**31),)
        state = margin_model.AccountState(cash=0, futures=held)
        after, _ = model_clearing.apply_trades(state, [model_clearing.PreviewTrade(9, trade, 2_000 * WAD)], listings, 0)
        return after.cash

    assert cash_after(3 * WAD, -2 * WAD) == -2 * 7 * WAD  # nothing realized while a unit stays
    assert cash_after(-3 * WAD, WAD) == -5 * WAD
    assert cash_after(0, -2 * WAD) == 0


def test_bid__spends_the_exit_charges_first__then_the_index(
    cm, vault, clearing, pair, bidder, admin, stranger, operator, taker
):
    """At the bid the side's share is paid from what the leavers paid (`from_exits`) and only
    the rest is charged through the loss index over the units that stayed; the loss still
    adds up to the wei."""
    perp = cm.markets.perp("ETH")
    u = cm.manifest.underlyings["ETH"]
    set_eth(cm, admin, "4100")
    cm.liquidator.start(stranger, pair)
    cm.trade(operator, taker, perp, "-10", "4100")  # half the longs leave
    collected = clearing.collected(perp)
    position = clearing.perp_position(pair, u)
    positions = [model.LinearPosition(perp, position.size, position.cost, to_wad(4100), to_wad(10))]
    receipt = cm.liquidator.bid(bidder, pair, "1", "0")
    [covered] = receipt.decode_logs(cm.liquidator.contract.LossCovered)
    [charge] = receipt.decode_logs(clearing.Deleveraged)
    pots = {perp: collected}
    rest = covered.loss - covered.fund_payout
    assert model.deleverage(positions, rest, WAD, pots, collected) == (
        covered.deleveraged,
        [model.Charge(**charge.event_arguments)],
    )
    assert charge.from_exits == min(collected, rest) > 0
    assert covered.deleveraged == charge.amount + charge.from_exits
    assert covered.loss == covered.fund_payout + covered.deleveraged + covered.socialized
    # the whole account went: the auction ended, its pending charge and the rest of the
    # exit charges were released (to the fund, as no other loss is pending)
    assert clearing.pending_charge(perp) == 0 and clearing.collected(perp) == 0
    assert vault.pending_loss() == 0 and vault.exit_charges() == 0
    [released] = receipt.decode_logs(vault.ExitPoolReleased)
    assert released.amount == collected - charge.from_exits


def test_release__after_the_auction_ends_leaving_is_free(
    cm, vault, clearing, pair, admin, stranger, operator, taker, trader
):
    """A terminated insolvent auction (cured by a deposit) releases its pending charges:
    closing afterwards pays nothing, and what was paid goes to the fund."""
    perp = cm.markets.perp("ETH")
    set_eth(cm, admin, "4100")
    cm.liquidator.start(stranger, pair)
    receipt = cm.trade(operator, taker, perp, "-2", "4100")
    [paid] = receipt.decode_logs(clearing.ExitCharged)
    set_eth(cm, admin, "3000")  # the account is healthy again
    fund_cash = vault.cash_of(cm.fund.address, 0)
    receipt = cm.liquidator.terminate(stranger, pair)
    assert clearing.pending_charge(perp) == 0 and clearing.collected(perp) == 0
    assert vault.exit_charges() == 0 and vault.cash_of(cm.fund.address, 0) == fund_cash + paid.amount
    receipt = cm.trade(operator, taker, perp, "-2", "3000")
    assert receipt.decode_logs(clearing.ExitCharged) == []


def test_mark__none_while_the_fund_covers_the_reserve(
    cm, vault, clearing, book, admin, stranger, operator, taker, create_account, insure
):
    """A fund that covers the whole reserve leaves nothing to deleverage: no side is marked,
    leaving is free."""
    insure("100000")
    create_account(operator, {"USDC": "1000000"})
    create_account(taker, {"USDC": "1000000"})
    perp = cm.markets.perp("ETH")
    cm.trade(operator, taker, perp, "10", "3000")
    set_eth(cm, admin, "4100")
    receipt = cm.liquidator.start(stranger, book)
    assert receipt.decode_logs(clearing.ChargePending) == [] and clearing.pending_charge(perp) == 0
    receipt = cm.trade(operator, taker, perp, "-10", "4100")
    assert receipt.decode_logs(clearing.ExitCharged) == []


def test_exit_charges__bad_callers(cm, clearing, vault, stranger):
    with ape.reverts("clearing: not liquidator"):
        clearing.mark(1, 1, sender=stranger)
    with ape.reverts("clearing: not liquidator"):
        clearing.release(1, sender=stranger)
    moves = ape.project.ClearingMoves.at(clearing.MOVES())
    with ape.reverts("clearing: moves called directly"):
        moves.mark(1, 1, sender=stranger)
    with ape.reverts("clearing: moves called directly"):
        moves.release(1, sender=stranger)
    with ape.reverts("vault: not clearing"):
        vault.settle_cash([(0, 1)], sender=stranger)


def test_status__shows_the_pending_charges_paid(
    cm, vault, pair, admin, stranger, operator, taker, run_status, tmp_path
):
    """`ape run status` shows what leavers paid while a deleveraging is pending."""
    set_eth(cm, admin, "4100")
    cm.liquidator.start(stranger, pair)
    cm.trade(operator, taker, cm.markets.perp("ETH"), "-3", "4100")
    out = run_status(as_json=True, state_file=tmp_path / "none.json")
    fund = json.loads(out[out.index("{") :])["fund"]
    assert Decimal(fund["exit_charges"]) == from_wad(vault.exit_charges()) > 0
    assert "exit charges (USD)" in run_status(state_file=tmp_path / "none.json")


# ---------------------------------------------------------------- the rule, on the model


@given(
    short=st.integers(1, 10**6),  # the insolvent account's short (units of 0.001)
    others=st.integers(0, 10**6),  # other shorts, as many long units more
    entry=st.integers(100, 10**5),  # entry and index price (whole USD)
    rise=st.integers(1, 10**5),
    bound_pct=st.integers(0, 200),  # the bound marked, % of the account's loss
    deficit_pct=st.integers(0, 100),  # the deficit at the bid, % of what was marked
    leaving_pct=st.integers(0, 99),  # long units that leave before the bid
)
@settings(max_examples=examples(400), deadline=None)
def test_exit_charge__leavers_pay_at_least_and_stayers_at_most_their_share(
    short, others, entry, rise, bound_pct, deficit_pct, leaving_pct
):
    """Whatever the sizes, prices, bound and deficit (within what was marked): each unit
    that left paid at least the deficit per unit of the open interest when the loss became
    known, each unit that stayed pays at most that (to the wei, rounded up once), and the
    loss charged is the deficit less dust."""
    perp = 1
    size = -short * 10**15
    open_interest = (short + others) * 10**15
    cost = size * entry
    position = model.LinearPosition(perp, size, cost, (entry + rise) * WAD, open_interest)
    loss = model.linear_loss(position)
    bound = loss * bound_pct // 100
    marks = model.mark([position], bound)
    if bound == 0:
        assert marks == []
        return
    [mark] = marks
    assert mark.longs and mark.amount == min(bound, loss) and mark.per_unit * open_interest >= mark.amount * WAD
    leaving = open_interest * leaving_pct // 100
    paid = model.exit_charge(leaving, -leaving, mark.per_unit, 0)
    deficit = mark.amount * deficit_pct // 100
    stayed = model.LinearPosition(perp, size, cost, position.spot, open_interest - leaving)
    charged, charges = model.deleverage([stayed], deficit, WAD, {perp: paid}, paid)
    assert charged <= deficit and deficit - charged <= (open_interest - leaving) // WAD + 1
    fair = deficit * WAD // open_interest  # per unit, had nobody left
    assert paid * WAD >= leaving * fair  # the leavers paid at least their share
    for charge in charges:
        assert charge.per_unit <= fair  # the stayers pay at most theirs
        assert charge.from_exits <= paid


def test_exit_charges__never_spent_beyond_what_the_vault_holds(project, admin, usdc):
    """A clearing contract spending more exit charges than were paid in reverts (the
    clearinghouse caps what it spends at `exit_charges`; this is the vault's own guard)."""
    vault = admin.deploy(project.Vault, usdc.address, 10**40)
    driver = admin.deploy(project.VaultDriver)
    vault.set_clearing(driver, True, sender=admin)
    driver.settle_cash(vault, [(0, 5)], sender=admin)
    assert vault.exit_charges() == 5
    with ape.reverts("vault: exit charges short"):
        driver.settle_cash(vault, [(0, -6)], sender=admin)
    driver.settle_cash(vault, [(0, -5)], sender=admin)
    assert vault.exit_charges() == 0
