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
    opened_at = NOW - age  # the epoch opened before now (and before a live option's expiry)
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
    option = model.OptionPosition(
        instrument=1, underlying=1, kind=kind, strike=strike, expiry=expiry, size=WAD, settlement_price=settlement
    )
    expected = model.compute_array(option, ctx, model.EngineParams(rate=rate))
    shocks = vol_up | (vol_down << 64) | (vol_floor << 128) | (term_exponent << 192)
    words = risk_model.compute_array(
        (spot, vol, epoch, opened_at, NOW, len(grid), model.pack_grid(grid), quantum, shocks, rate),
        (kind, strike, expiry, settlement),
    )
    assert tuple(words) == tuple(expected)
