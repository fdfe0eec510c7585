"""Differential tests: the Python reference model (``crossmargin.model.margin``) against the
deployed margin engine, to the wei.

Portfolios are built through real trades on the exchange between a `maker` and a `taker`
with large USDC, WETH and WBTC deposits; oracle prices and vols move and time passes
between trades. After every step, both accounts are loaded from the chain at the head block
(`snapshot`) and the model's margin and risk (and greeks after the last step) must equal the
engine's views at that same block. Views at a pinned block run at that block's timestamp, so both sides see the
same clock.

Deterministic tests cover both paths of risk arrays: stored ones (keeper `refresh`, a trade,
a withdrawal) and stale ones computed in memory by the views (a new oracle round, or an
epoch older than `max_array_age` with unchanged rounds).
"""

from __future__ import annotations

import pytest
from ape import chain
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sizes import examples

from crossmargin.model import fixed
from crossmargin.model import margin as model
from crossmargin.units import WAD, account_id, from_wad, key

DAY = 86_400
# Feeds pushed by the tests (8 decimals) and their bounds in the local config.
SPOT_FEEDS = {"ETH": "ETH/USD", "BTC": "BTC/USD"}
VOL_FEEDS = {"ETH": "ETH/IV", "BTC": "BTC/IV"}
ALL_FEEDS = ("USDC/USD", "ETH/USD", "BTC/USD", "ETH/IV", "BTC/IV")
# Largest |size| traded per example step, by underlying (units).
MAX_OPTION_SIZE = {"ETH": 40, "BTC": 2}
MAX_PERP_SIZE = {"ETH": 150, "BTC": 8}
# Feeds older than heartbeat (3600 s) + grace (300 s) revert; re-push before that.
FEED_AGE_LIMIT = 3_800
DEPOSITS = {"USDC": 5_000_000, "WETH": 300, "WBTC": 15}
# Listed options: (underlying, is_call, strike in USD, days to expiry).
LISTINGS = (
    ("ETH", True, 3000, 1),
    ("ETH", False, 3000, 7),
    ("ETH", True, 3400, 30),
    ("ETH", False, 2600, 30),
    ("ETH", True, 2800, 90),
    ("ETH", False, 3300, 90),
    ("BTC", True, 60000, 7),
    ("BTC", False, 55000, 30),
    ("BTC", True, 70000, 90),
)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def options(cm, admin):
    """Instrument ids of the listed options (in `LISTINGS` order), with their underlying's name."""
    now = chain.pending_timestamp
    return {
        cm.markets.list_option(admin, name, is_call, strike, now + days * DAY): name
        for name, is_call, strike, days in LISTINGS
    }


@pytest.fixture(scope="module")
def book_maker(maker, create_account):
    return create_account(maker, DEPOSITS)


@pytest.fixture(scope="module")
def book_taker(taker, create_account):
    return create_account(taker, DEPOSITS)


@pytest.fixture(scope="module")
def stack(cm, admin, keeper, options, book_maker, book_taker):
    """Everything a test needs, listed and funded once per module."""
    return cm


@pytest.fixture(autouse=True)
def fresh_feeds(stack, admin):
    """New rounds of every feed first: earlier tests may have moved the clock past heartbeats."""
    push_all(stack, admin)


# ---------------------------------------------------------------- helpers


def head() -> int:
    return chain.blocks.head.number


def push(cm, admin, feed: str, wad: int) -> None:
    """Publishes a new round of ``feed`` at ``wad`` (rounded to the feed's 8 decimals)."""
    aggregator = cm.oracle.aggregator(feed)
    aggregator.push(wad // 10 ** (18 - aggregator.decimals()), sender=admin)


def push_all(cm, admin) -> None:
    """New rounds of every feed at their last answers (stale or not): fresh prices, new epochs."""
    for feed in ALL_FEEDS:
        aggregator = cm.oracle.aggregator(feed)
        aggregator.push(aggregator.latestRoundData()[1], sender=admin)


def underlying_id(cm, name: str) -> int:
    return cm.clearing.underlyings[name]


def quote(cm, instrument: int, name: str) -> int:
    """A sensible price (WAD): the option's Black-Scholes value, or the perp's spot."""
    block = head()
    state = model.load_underlying(cm, underlying_id(cm, name), block)
    if instrument == cm.markets.perp(name):
        return state.spot
    listing = cm.markets.contract.instrument(instrument)
    rate = cm.engine.contract.rate()
    now = chain.blocks[block].timestamp
    value = fixed.bs_price(
        state.spot, listing.strike, state.vol, max(listing.expiry - now, 0), rate, listing.kind == model.CALL
    )
    return max(value, 10**15)


def chain_margin(cm, owner, block_id: int) -> model.Margin:
    m = cm.engine.contract.margin(account_id(str(owner)), block_id=block_id)
    return model.Margin(m.equity, m.initial, m.maintenance)


def chain_risk(cm, owner, block_id: int) -> list[model.UnderlyingRisk]:
    return [
        model.UnderlyingRisk(r.underlying, r.worst_scenario, r.loss, tuple(r.pnl))
        for r in cm.engine.contract.risk(account_id(str(owner)), block_id=block_id)
    ]


def chain_greeks(cm, owner, block_id: int) -> list[model.Greeks]:
    return [
        model.Greeks(g.underlying, g.delta, g.gamma, g.vega)
        for g in cm.engine.risk_model.greeks(account_id(str(owner)), block_id=block_id)
    ]


def assert_model_matches(cm, owner, block_id: int | None = None, with_greeks: bool = True):
    """Margin, risk and (unless told not to) greeks of the engine at ``block_id`` equal the
    model's, exactly.

    Returns:
        The snapshot the model used, for further checks.
    """
    block_id = head() if block_id is None else block_id
    snap = model.snapshot(cm, owner, block_id=block_id)
    assert chain_margin(cm, owner, block_id) == model.margin(*snap)
    assert chain_risk(cm, owner, block_id) == model.risk(*snap)
    if with_greeks:
        assert chain_greeks(cm, owner, block_id) == model.greeks(*snap)
    return snap


def assert_bounds_match(cm, owner, snap, picks: tuple[int, int]) -> None:
    """`refresh_bound` (run as a call at the head) equals the model's bound: at the worst
    scenarios (`scenario_hint`) the requirements themselves; at the scenarios `picks` names
    for ETH and BTC, lower bounds with the same equity."""
    snap = model.snapshot(cm, owner, block_id=head())
    account = account_id(str(owner))
    exact = model.margin(*snap)
    worst = model.scenario_hint(model.risk(*snap))
    assert tuple(cm.engine.contract.refresh_bound.call(account, worst)) == tuple(exact)
    hint = sum(pick << (8 * underlying_id(cm, name)) for pick, name in zip(picks, ("ETH", "BTC"), strict=True))
    bound = model.margin(*snap, hint=hint)
    assert tuple(cm.engine.contract.refresh_bound.call(account, hint)) == tuple(bound)
    assert bound.equity == exact.equity
    assert bound.maintenance <= exact.maintenance and bound.initial <= exact.initial


def stored_as_current(snap):
    """The snapshot with every epoch record made current (rounds live, opened now): the
    model then values options from the stored arrays, as a check would if it used them."""
    state, underlyings, params, now = snap
    current = {
        u: model.with_epoch(s, model.EpochRecord(s.spot_round, s.vol_round, s.epoch.epoch, now))
        for u, s in underlyings.items()
    }
    return state, current, params, now


# ---------------------------------------------------------------- differential (Hypothesis)

trade_steps = st.tuples(
    st.integers(0, 10**6),  # instrument pick (modulo the live ones)
    st.one_of(st.integers(1, WAD), st.integers(1, 10**6)),  # |size|: a fraction of the maximum, or dust
    st.booleans(),  # the maker sells
    st.integers(-20, 20),  # price offset, % of the quote (options) or 0.1% of spot (perps)
    st.sampled_from(["none", "none", "spot", "vol", "warp"]),  # what happens after it
    st.integers(-100, 100),  # move of that step: spot in 0.1%, vol in 0.25%
    st.integers(1, 3_000),  # warp (s)
)


# concentration add-on per underlying (free, depth in thousands of USD), or the config's
# (which never binds at these sizes): small enough that it binds for most books
concentrations = st.one_of(st.none(), st.tuples(st.integers(0, 40), st.integers(1, 120)))


@pytest.mark.slow
@given(
    steps=st.lists(trade_steps, min_size=1, max_size=6),
    picks=st.tuples(st.integers(0, 22), st.integers(0, 22)),
    concentration=st.tuples(concentrations, concentrations),
)
@settings(
    max_examples=examples(20),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_model__random_portfolios__equal_engine_views(
    stack, admin, book_maker, book_taker, options, steps, picks, concentration
):
    cm = stack
    snapshot = chain.snapshot()
    try:
        for name, fields in zip(("ETH", "BTC"), concentration, strict=True):
            if fields is not None:
                cm.engine.risk_model.set_concentration(underlying_id(cm, name), *fields, sender=admin)
        push_all(cm, admin)
        last_push = chain.blocks.head.timestamp
        for step, (pick, fraction, sells, offset, after, move, warp) in enumerate(steps, 1):
            now = chain.pending_timestamp
            live = sorted(i for i, name in options.items() if cm.markets.contract.instrument(i).expiry > now + DAY)
            instruments = [(i, options[i]) for i in live] + [(cm.markets.perp(n), n) for n in ("ETH", "BTC")]
            instrument, name = instruments[pick % len(instruments)]
            is_perp = instrument == cm.markets.perp(name)
            cap = (MAX_PERP_SIZE if is_perp else MAX_OPTION_SIZE)[name]
            size = fraction * cap * (-1 if sells else 1)
            price = quote(cm, instrument, name)
            price = price * (1000 + offset) // 1000 if is_perp else price * (100 + offset) // 100
            cm.trade(book_maker, book_taker, instrument, from_wad(size), from_wad(max(price, 1)))

            if after == "spot":
                feed = SPOT_FEEDS[name]
                push(cm, admin, feed, cm.oracle.contract.price(key(feed)) * (1000 + move) // 1000)
            elif after == "vol":
                feed = VOL_FEEDS[name]
                vol = cm.oracle.contract.price(key(feed)) * (400 + move) // 400
                push(cm, admin, feed, min(max(vol, 10**17), 3 * WAD))
            elif after == "warp":
                target = chain.blocks.head.timestamp + warp
                chain.mine(timestamp=target)
                if target - last_push > FEED_AGE_LIMIT - 60:
                    push_all(cm, admin)
                    last_push = chain.blocks.head.timestamp

            for owner in (book_maker, book_taker):
                snap = assert_model_matches(cm, owner, with_greeks=step == len(steps))
        for owner in (book_maker, book_taker):
            assert_bounds_match(cm, owner, snap, picks)
    finally:
        chain.restore(snapshot)


# arrays stored by the first example of the refresh property, by instrument id
REFRESHED: dict[int, tuple[int, ...]] = {}


@given(order=st.permutations(range(len(LISTINGS))), cuts=st.sets(st.integers(1, len(LISTINGS) - 1), max_size=4))
@settings(
    max_examples=examples(12),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_model__refresh__alone_batched_any_order__same_arrays(stack, admin, keeper, options, order, cuts):
    """After a new round, refreshing the listed options alone, in batches or in any order (ETH
    and BTC mixed) stores the same arrays, bit for bit, and they are the model's."""
    cm = stack
    ids = list(options)
    snapshot = chain.snapshot()
    try:
        start = chain.blocks.head.timestamp
        push_all(cm, admin)  # every array stale
        # both epochs open in one block at the same time in every example (arrays depend on
        # it), with the first option of each underlying in `order`; the rest follow in batches
        first = [next(ids[i] for i in order if options[ids[i]] == name) for name in SPOT_FEEDS]
        chain.pending_timestamp = start + 120
        cm.engine.contract.refresh(first, sender=keeper)
        rest = [ids[i] for i in order if ids[i] not in first]
        bounds = [0, *sorted(c for c in cuts if c < len(rest)), len(rest)]
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            cm.engine.contract.refresh(rest[lo:hi], sender=keeper)
        block = head()
        state = {n: model.load_underlying(cm, underlying_id(cm, n), block) for n in SPOT_FEEDS}
        params = model.EngineParams(rate=cm.engine.contract.rate(block_id=block))
        for instrument, name in options.items():
            ctx = model.context(state[name], params, chain.blocks[block].timestamp)
            assert ctx.stored and ctx.opened_at == start + 120
            listing = cm.markets.contract.instrument(instrument, block_id=block)
            option = model.OptionPosition(
                instrument=instrument,
                underlying=listing.underlying,
                kind=listing.kind,
                strike=listing.strike,
                expiry=listing.expiry,
                size=WAD,
                settlement_price=listing.settlement_price,
            )
            epoch, shift, lanes, unsettled = cm.engine.contract.risk_array(instrument, block_id=block)
            stored = model.pack_array(epoch, list(lanes), shift, unsettled)
            assert stored == model.compute_array(option, ctx, params)
            assert REFRESHED.setdefault(instrument, stored) == stored
    finally:
        chain.restore(snapshot)


# ---------------------------------------------------------------- deterministic


def test_model__collateral_only__equals_engine(stack, book_maker):
    """No positions: equity is the floored collateral value, MM/IM the haircuts plus the
    tracking collateral's worst spot shock."""
    assert_model_matches(stack, book_maker)


def test_model__concentration_binding__equals_engine_and_bounds(stack, admin, book_maker, book_taker, options):
    """Options and perps on both underlyings with a concentration add-on that binds (free
    1,000 USD, depth 2,000 USD on ETH; free 0, depth 1,000 USD on BTC: capped at 4 L):
    margin, risk and every hinted bound equal the model's, and the bounds stay below."""
    cm = stack
    for name, fields in (("ETH", (1, 2)), ("BTC", (0, 1))):
        cm.engine.risk_model.set_concentration(underlying_id(cm, name), *fields, sender=admin)
    for instrument, name in list(options.items())[2:4] + list(options.items())[7:8]:
        cm.trade(book_maker, book_taker, instrument, "-3" if name == "ETH" else "-0.5", "150")
    cm.trade(book_maker, book_taker, cm.markets.perp("ETH"), "20", "3000")
    cm.trade(book_maker, book_taker, cm.markets.perp("BTC"), "-1", "60000")
    for owner in (book_maker, book_taker):
        snap = assert_model_matches(cm, owner)
        underlyings = snap[1]
        assert all(s.concentration_depth != 0 for s in underlyings.values())
        loss = {r.underlying: r.loss for r in model.risk(*snap)}
        assert any(model.concentration(loss[u], underlyings[u]) > 0 for u in loss)
        assert_bounds_match(cm, owner, snap, (8, 4))


def test_model__default_grid__equals_engine_grid(stack):
    for name in ("ETH", "BTC"):
        shocks, moves, weights = stack.engine.contract.grid(underlying_id(stack, name))
        assert tuple(zip(shocks, moves, weights, strict=True)) == model.default_grid()


def test_model__refresh_then_new_round__view_recomputes_in_memory(
    stack, admin, keeper, book_maker, book_taker, options
):
    cm = stack
    eth = underlying_id(cm, "ETH")
    call, put = list(options)[2:4]  # ETH 3400 call and 2600 put, 30 days
    perp = cm.markets.perp("ETH")
    cm.trade(book_maker, book_taker, call, "5", from_wad(quote(cm, call, "ETH")))
    cm.trade(book_maker, book_taker, put, "-7.5", from_wad(quote(cm, put, "ETH")))
    cm.trade(book_maker, book_taker, perp, "-3", from_wad(quote(cm, perp, "ETH")))
    epoch = cm.engine.contract.epoch(eth)[2]

    # a new spot round: the stored epoch is stale until someone stores the new one
    push(cm, admin, "ETH/USD", 3100 * WAD)
    assert cm.engine.contract.refresh([call, put, perp], sender=keeper).return_value == 2
    spot_round, vol_round, refreshed, opened_at, horizon = cm.engine.contract.epoch(eth)
    assert refreshed == epoch + 1
    assert opened_at == chain.blocks.head.timestamp
    for instrument in (call, put):
        assert cm.engine.contract.risk_array(instrument)[0] == refreshed
    # the keeper's arrays are current: the model reads them as stored, and they equal its own
    for owner in (book_maker, book_taker):
        snap = assert_model_matches(cm, owner)
        state, underlyings, params, now = snap
        ctx = model.context(underlyings[eth], params, now)
        assert ctx.stored and ctx.epoch == refreshed
        for option in state.options:
            assert option.array == model.compute_array(option, ctx, params)
    # a refresh with nothing stale stores nothing
    assert cm.engine.contract.refresh([call, put], sender=keeper).return_value == 0

    # a new vol round: views compute the arrays in memory and store nothing
    push(cm, admin, "ETH/IV", 7 * 10**17)
    for owner in (book_maker, book_taker):
        snap = assert_model_matches(cm, owner)
        assert not model.context(snap[1][eth], snap[2], snap[3]).stored
        # had the stale arrays been used, the valuation would differ
        assert model.margin(*stored_as_current(snap)) != chain_margin(cm, owner, head())
    assert cm.engine.contract.epoch(eth) == (spot_round, vol_round, refreshed, opened_at, horizon)
    for instrument in (call, put):
        assert cm.engine.contract.risk_array(instrument)[0] == refreshed


@pytest.mark.parametrize("path", ["withdraw", "trade"])
def test_model__state_changing_check__stores_arrays_of_new_epoch(stack, admin, book_maker, book_taker, options, path):
    cm = stack
    eth = underlying_id(cm, "ETH")
    call, put = list(options)[2:4]
    cm.trade(book_maker, book_taker, call, "-4", from_wad(quote(cm, call, "ETH")))
    cm.trade(book_maker, book_taker, put, "6", from_wad(quote(cm, put, "ETH")))
    epoch = cm.engine.contract.epoch(eth)[2]
    push(cm, admin, "ETH/USD", 2950 * WAD)
    # before the check: the view computes at the epoch that would open now
    before = model.snapshot(cm, book_maker)
    assert not model.context(before[1][eth], before[2], before[3]).stored

    if path == "withdraw":
        receipt = cm.vault.withdraw(book_maker, "WETH", "1")
        touched = [book_maker]
    else:
        receipt = cm.trade(book_maker, book_taker, call, "1", from_wad(quote(cm, call, "ETH")))
        touched = [book_maker, book_taker]
    block = receipt.block_number
    if path == "withdraw":
        # the epoch opens first, then the stale arrays are stored in position order, in one
        # batch (one event) per underlying
        engine = cm.engine.contract
        logs = receipt.decode_logs([engine.EpochOpened, engine.RiskArraysStored])
        account = account_id(str(book_maker))
        held = [i for i in cm.clearing.contract.option_ids(account) if options.get(i) == "ETH"]
        assert [log.event_name for log in logs] == ["EpochOpened", "RiskArraysStored"]
        assert (logs[0].underlying, logs[0].epoch) == (eth, epoch + 1)
        assert (logs[1].underlying, logs[1].epoch, list(logs[1].instruments)) == (eth, epoch + 1, held)
    spot_round, vol_round, opened, opened_at, _ = cm.engine.contract.epoch(eth, block_id=block)
    assert opened == epoch + 1
    assert opened_at == chain.blocks[block].timestamp
    for owner in touched:
        state, underlyings, params, now = assert_model_matches(cm, owner, block)
        u = underlyings[eth]
        assert (spot_round, vol_round) == (u.spot_round, u.vol_round)
        ctx = model.context(u, params, now)
        assert ctx.stored and ctx.epoch == opened
        for option in state.options:
            assert cm.engine.contract.risk_array(option.instrument, block_id=block)[0] == opened
            assert option.array == model.compute_array(option, ctx, params)


def test_model__array_older_than_max_age__not_used(stack, admin, book_maker, book_taker, options):
    cm = stack
    eth = underlying_id(cm, "ETH")
    put, call = list(options)[1], list(options)[4]  # 7-day put, 90-day call
    max_age = cm.engine.contract.max_array_age()
    push_all(cm, admin)
    receipt = cm.trade(book_maker, book_taker, put, "3", from_wad(quote(cm, put, "ETH")))
    cm.trade(book_maker, book_taker, call, "-2", from_wad(quote(cm, call, "ETH")))
    record = cm.engine.contract.epoch(eth)
    opened_at = record[3]
    assert opened_at == chain.blocks[receipt.block_number].timestamp

    # exactly max_array_age old, same rounds: the stored arrays are used
    chain.mine(timestamp=opened_at + max_age)
    for owner in (book_maker, book_taker):
        snap = assert_model_matches(cm, owner)
        assert model.context(snap[1][eth], snap[2], snap[3]).stored
    # one second older: never used, the view values at an epoch opened now
    chain.mine(timestamp=opened_at + max_age + 1)
    for owner in (book_maker, book_taker):
        snap = assert_model_matches(cm, owner)
        state, underlyings, params, now = snap
        assert underlyings[eth].epoch == model.EpochRecord(*record)  # same rounds, same record
        assert not model.context(underlyings[eth], params, now).stored
        assert model.margin(*stored_as_current(snap)) != chain_margin(cm, owner, head())
    assert cm.engine.contract.epoch(eth) == record


def test_model__funding_accrues_between_trades(stack, admin, book_maker, book_taker):
    """A perp traded away from spot moves the EMA premium; unsettled funding accrues in the
    valuation as time passes (no trade settles it)."""
    cm = stack
    perp = cm.markets.perp("ETH")
    spot = cm.oracle.contract.price(key("ETH/USD"))
    cm.trade(book_maker, book_taker, perp, "10", from_wad(spot * 102 // 100))
    chain.mine(timestamp=chain.blocks.head.timestamp + 1_800)
    cm.trade(book_maker, book_taker, perp, "5", from_wad(spot * 103 // 100))
    for dt in (1, 600, 1_200):
        chain.mine(timestamp=chain.blocks.head.timestamp + dt)
        for owner in (book_maker, book_taker):
            state, *_ = assert_model_matches(cm, owner)
            assert state.perps[0].premium_ema != 0


def test_model__margin_adjusted__equals_engine(stack, book_maker, book_taker, options):
    cm = stack
    btc_call = list(options)[6]
    cm.trade(book_maker, book_taker, btc_call, "-1.5", from_wad(quote(cm, btc_call, "BTC")))
    block = head()
    snap = model.snapshot(cm, book_taker, block_id=block)
    for adjust in (-(10**20) - 1, 0, 12_345 * WAD + 7):
        m = cm.engine.contract.margin_adjusted(account_id(str(book_taker)), adjust, block_id=block)
        assert model.Margin(m.equity, m.initial, m.maintenance) == model.margin(*snap, cash_adjust=adjust)


def test_model__short_expiry_option__equals_engine(stack, admin, book_maker, book_taker, options):
    """The 1-day option near expiry: tau below the 1-day term floor, vol shocks at their largest."""
    cm = stack
    day_call = list(options)[0]
    cm.trade(book_maker, book_taker, day_call, "-8", from_wad(quote(cm, day_call, "ETH")))
    expiry = cm.markets.contract.instrument(day_call).expiry
    chain.mine(timestamp=expiry - 1_000)
    push_all(cm, admin)
    for owner in (book_maker, book_taker):
        assert_model_matches(cm, owner)
    # past expiry, unsettled: valued at intrinsic (tau = 0)
    chain.mine(timestamp=expiry + 10)
    push_all(cm, admin)
    for owner in (book_maker, book_taker):
        state, _, _, now = assert_model_matches(cm, owner)
        assert [o.expiry <= now for o in state.options] == [True]


def test_model__deep_itm_option_at_high_spot__scaled_array_values_it(
    stack, admin, keeper, book_maker, book_taker, options
):
    """A lane holds < 2**19 units of ``quantum << shift``. A BTC call deep in the money
    under the +200% tail is worth about 2.6M USD per unit at spot 900k: at the default
    1e-6 USD quantum that needs shift 23, and the engine picks it (the old fixed 40-bit
    lanes reverted "engine: value out of range" here, blocking every valuation of the
    account, liquidation included). Views (array in memory), keeper refresh (stored) and
    the model agree to the wei."""
    cm = stack
    btc = underlying_id(cm, "BTC")
    btc_call = list(options)[6]
    cm.trade(book_maker, book_taker, btc_call, "0.5", from_wad(quote(cm, btc_call, "BTC")))
    push(cm, admin, "BTC/USD", 900_000 * WAD)
    for owner in (book_maker, book_taker):
        assert_model_matches(cm, owner)  # stale epoch: the views compute the array in memory
    assert cm.engine.contract.refresh([btc_call], sender=keeper).return_value == 1
    epoch, shift, stored, _ = cm.engine.contract.risk_array(btc_call)
    assert shift == 23
    assert max(stored) >= 2**18  # the smallest shift: one less would not fit 19 bits
    quantum = cm.engine.contract.underlyings(btc).quantum
    assert max(stored) * (quantum << shift) > 1_000_000 * WAD  # over 1M USD per unit
    for owner in (book_maker, book_taker):
        state, underlyings, params, now = assert_model_matches(cm, owner)
        ctx = model.context(underlyings[btc], params, now)
        assert ctx.stored
        option = next(o for o in state.options if o.instrument == btc_call)
        assert option.array == model.compute_array(option, ctx, params)
    assert cm.engine.contract.maintenance_health(account_id(str(book_maker))) > 0
