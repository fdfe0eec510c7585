"""RiskModel: the risk arrays it prices are the model's ``compute_array``, bit for bit.

The engine passes every input an array depends on (``ArrayContext`` and ``Terms``), so the
pure ``compute_array`` is checked here on its own, over live and expired (settled or not)
options, both kinds, the default and custom grids and the whole range of risk parameters;
``test_model.py`` checks the same arrays through the engine's valuations."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sizes import examples

from crossmargin.model import margin as model
from crossmargin.units import WAD

DAY = 86_400
NOW = 1_800_000_000  # any block time: the function is pure

DIFF = settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def log_uniform(lo: int, hi: int) -> st.SearchStrategy[int]:
    """Integers in [lo, hi] spread over orders of magnitude, plus the bounds."""
    ratio = hi / lo
    spread = st.integers(0, 10_000).map(lambda i: min(hi, max(lo, int(lo * ratio ** (i / 10_000)))))
    return st.one_of(st.sampled_from([lo, hi]), spread)


scenario = st.builds(
    model.Scenario,
    st.integers(-9_500, 30_000).map(lambda x: x * 100),
    st.integers(0, 2),
    st.integers(1, 10_000).map(lambda x: x * 100),
)
grids = st.one_of(
    st.just(model.default_grid()),
    st.lists(scenario, min_size=1, max_size=31).map(lambda rest: (model.default_grid()[0], *rest)),
)


@DIFF
def array_context(spot, vol, quantum, vol_moves, grid, epoch, age, rate) -> tuple:
    """An underlying's pricing inputs twice: the model's ``Context`` (an epoch opened ``age``
    seconds before NOW) and the risk model's ``ArrayContext`` tuple. ``vol_moves``: vol up,
    vol down, vol floor and term exponent (WAD)."""
    vol_up, vol_down, vol_floor, term_exponent = vol_moves
    opened_at = NOW - age
    underlying = model.UnderlyingState(
        id=1,
        spot=spot,
        vol=vol,
        spot_round=0,
        vol_round=0,
        quantum=quantum,
        vol_up=vol_up,
        vol_down=vol_down,
        vol_floor=vol_floor,
        term_exponent=term_exponent,
        short_option_rate=0,
        perp_rate=0,
        grid=grid,
        epoch=model.EpochRecord(0, 0, epoch, opened_at),
    )
    ctx = model.Context(
        underlying=underlying, spot=spot, vol=vol, epoch=epoch, opened_at=opened_at, stored=True, now=NOW
    )
    shocks = vol_up | (vol_down << 64) | (vol_floor << 128) | (term_exponent << 192)
    return ctx, (spot, vol, epoch, opened_at, NOW, len(grid), model.pack_grid(grid), quantum, shocks, rate)


@given(
    spot=log_uniform(10**15, 10**24),
    strike=log_uniform(10**15, 10**24),
    vol=log_uniform(5 * 10**16, 2 * WAD),
    kind=st.sampled_from([model.CALL, model.PUT]),
    expiry_in=st.one_of(st.integers(-30 * DAY, 0), st.integers(1, 2 * 365 * DAY)),
    age=st.integers(0, 3_600),
    settled=st.booleans(),
    rate=st.one_of(st.just(0), st.integers(0, 2 * 10**17)),
    quantum=log_uniform(10**6, 10**16),
    vol_up=st.integers(0, WAD),
    vol_down=st.integers(0, WAD),
    vol_floor=st.integers(10**16, WAD),
    term_exponent=st.integers(0, 3 * 10**17),
    epoch=st.integers(0, 2**32 - 1),
    grid=grids,
)
def test_compute_array__any_option_and_grid__equals_model(
    risk_model,
    spot,
    strike,
    vol,
    kind,
    expiry_in,
    age,
    settled,
    rate,
    quantum,
    vol_up,
    vol_down,
    vol_floor,
    term_exponent,
    epoch,
    grid,
):
    expiry = NOW + expiry_in
    settlement = strike * 21 // 20 if settled and expiry <= NOW else 0
    # the epoch opened before now (and before a live option's expiry)
    ctx, args = array_context(spot, vol, quantum, (vol_up, vol_down, vol_floor, term_exponent), grid, epoch, age, rate)
    option = model.OptionPosition(
        instrument=1, underlying=1, kind=kind, strike=strike, expiry=expiry, size=WAD, settlement_price=settlement
    )
    expected = model.compute_array(option, ctx, model.EngineParams(rate=rate))
    words = risk_model.compute_array(args, (kind, strike, expiry, settlement))
    assert tuple(words) == tuple(expected)


# a batch: a few expiries (some past) and strikes, drawn so that expiries, strikes and
# call/put pairs repeat (the caches of `compute_arrays` are keyed by them)
batch_options = st.lists(
    st.tuples(
        st.sampled_from([-DAY, 0, 3_600, 7 * DAY, 30 * DAY]),
        st.sampled_from([2_000, 2_900, 3_000, 3_100, 4_500]),
        st.sampled_from([model.CALL, model.PUT]),
        st.booleans(),
    ),
    min_size=1,
    max_size=12,
)


# grids whose spots repeat, adjacent or not (the batch shares `ln` between some of them)
repeating_grids = st.lists(
    st.builds(
        model.Scenario,
        st.sampled_from([-9_500, -1_500, 0, 500, 1_500]).map(lambda x: x * 100),
        st.integers(0, 2),
        st.just(10_000 * 100),
    ),
    min_size=1,
    max_size=31,
).map(lambda rest: (model.default_grid()[0], *rest))


@DIFF
@given(
    options=batch_options,
    spot=log_uniform(10**20, 10**22),
    vol=log_uniform(5 * 10**16, 2 * WAD),
    rate=st.one_of(st.just(0), st.integers(0, 2 * 10**17)),
    quantum=log_uniform(10**6, 10**16),
    grid=st.one_of(grids, repeating_grids),
    order=st.randoms(use_true_random=False),
)
def test_compute_arrays__any_batch_and_order__equals_model_per_option(
    risk_model, options, spot, vol, rate, quantum, grid, order
):
    """Each array of a batch is the model's ``compute_array`` of its option alone, whatever
    else the batch holds and in whatever order (calls and puts of a strike adjacent or not)."""
    vol_moves = (5 * 10**17, 3 * 10**17, 5 * 10**17, 2 * 10**17)
    ctx, args = array_context(spot, vol, quantum, vol_moves, grid, epoch=77, age=600, rate=rate)
    terms = []
    for expiry_in, strike, kind, settled in options:
        expiry = NOW + expiry_in
        settlement = strike * WAD * 21 // 20 if settled and expiry <= NOW else 0
        terms.append((kind, strike * WAD, expiry, settlement))
    expected = [
        model.compute_array(
            model.OptionPosition(
                instrument=1, underlying=1, kind=kind, strike=strike, expiry=expiry, size=WAD, settlement_price=price
            ),
            ctx,
            model.EngineParams(rate=rate),
        )
        for kind, strike, expiry, price in terms
    ]
    assert [tuple(w) for w in risk_model.compute_arrays(args, terms)] == expected
    # any order, and sorted as the keeper sends them (expiry, strike, kind)
    shuffled = list(range(len(terms)))
    order.shuffle(shuffled)
    for permutation in (shuffled, sorted(shuffled, key=lambda i: (terms[i][2], terms[i][1], terms[i][0]))):
        words = risk_model.compute_arrays(args, [terms[i] for i in permutation])
        assert [tuple(w) for w in words] == [expected[i] for i in permutation]
    # and alone
    assert tuple(risk_model.compute_array(args, terms[0])) == expected[0]
