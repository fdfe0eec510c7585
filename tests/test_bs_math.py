"""bs_math: the chain equals the bit-exact model, and the model is accurate against mpmath.

Three tiers:
  - differential (Hypothesis): every function of ``MathHarness`` returns exactly what
    ``crossmargin.model.fixed`` returns, or both revert with the same reason;
  - accuracy: the model (hence the chain) against mpmath at 50 digits on dense grids, and
    a smaller grid on chain directly; the worst errors are printed so they can be quoted;
  - edge cases: revert reasons, ``tau == 0``, ``vol == 0``, deep ITM / OTM, monotonicity.
"""

from __future__ import annotations

import itertools

import ape
import mpmath
import pytest
from ape import project
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sizes import examples

from crossmargin.model import fixed
from crossmargin.model.fixed import CUT, EXP_MAX, WAD, YEAR

mpmath.mp.dps = 50

MAX_UINT = 2**256 - 1
MAX_INT = 2**255 - 1
MIN_INT = -(2**255)
HOUR, DAY = 3600, 86_400
ZERO_PRICE = "bs_math: zero price"

# Acceptance criterion: worst absolute price error <= 1e-8 * spot.
PRICE_TOL = mpmath.mpf("1e-8")
# Hart's own error is 4.1e-17 at worst (at |x| = 0.019, on a 0.001 grid over [0, 10] in
# mpmath); WAD rounding of `exp(-x^2/2) * P / Q` adds a few wei.
HART_TOL = mpmath.mpf("1e-16")
# West's switch-over to a continued fraction, which bs_math does not make (see `_ncdf`).
WEST_CUT = 7_071_067_811_865_470_000

DIFF = settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# --- strategies ------------------------------------------------------------------------


def log_uniform(lo: int, hi: int) -> st.SearchStrategy[int]:
    """Integers in [lo, hi] spread evenly over orders of magnitude, plus the bounds."""
    steps = 10_000
    ratio = mpmath.mpf(hi) / lo
    spread = st.integers(0, steps).map(lambda i: min(hi, max(lo, int(lo * ratio ** (mpmath.mpf(i) / steps)))))
    return st.one_of(st.sampled_from([lo, hi]), spread)


prices = log_uniform(10**12, 10**30)  # 1e-6 .. 1e12 USD (WAD)
vols = log_uniform(10**16, 10**19)  # 0.01 .. 10
taus = st.one_of(st.just(0), log_uniform(1, 5 * YEAR))  # 0 .. 5 years (seconds)
rates = st.one_of(st.just(0), st.integers(0, 2 * 10**17))  # 0 .. 0.2 per year
wide_int = st.one_of(
    st.integers(MIN_INT, MAX_INT),
    st.integers(-12 * WAD, 12 * WAD),
    st.integers(-12_000, 12_000).map(lambda i: i * 10**15),  # evenly over [-12, 12]
)


# --- helpers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def harness(admin):
    return admin.deploy(project.MathHarness)


def assert_same(chain_fn, model_fn, *args) -> None:
    """The chain returns what the model returns, or reverts with the model's reason."""
    try:
        expected = model_fn(*args)
    except ValueError as err:
        with ape.reverts(str(err)):
            chain_fn(*args)
        return
    got = chain_fn(*args)
    assert (tuple(got) if isinstance(expected, tuple) else got) == expected, args


def mp_wad(x: int) -> mpmath.mpf:
    return mpmath.mpf(x) / WAD


def reference(spot: int, strike: int, vol: int, tau: int, rate: int) -> dict[str, mpmath.mpf]:
    """Black-Scholes in 50-digit arithmetic from the same integer inputs."""
    s, k, v, r = mp_wad(spot), mp_wad(strike), mp_wad(vol), mp_wad(rate)
    t = mpmath.mpf(tau) / YEAR
    sig = v * mpmath.sqrt(t)
    disc = mpmath.exp(-r * t)
    d1 = (mpmath.log(s / k) + r * t) / sig + sig / 2
    d2 = d1 - sig
    pdf = mpmath.npdf(d1)
    return {
        "call": s * mpmath.ncdf(d1) - k * disc * mpmath.ncdf(d2),
        "put": k * disc * mpmath.ncdf(-d2) - s * mpmath.ncdf(-d1),
        "parity": s - k * disc,
        "delta": mpmath.ncdf(d1),
        "gamma": pdf / (s * sig),
        "vega": s * pdf * mpmath.sqrt(t),
        "pdf": pdf,
        "d1": d1,
        "sig": sig,
    }


def grid(spot: int, moneyness, vol_list, tau_list, rate_list):
    for m, v, tau, r in itertools.product(moneyness, vol_list, tau_list, rate_list):
        yield spot, spot * m // 1000, v, tau, r


# Dense accuracy grid: K/S 0.5..2 (31 points), vol 5 %..300 % (16), 1 hour..2 years (9), r 0 and 5 %.
MONEYNESS = [500 + 50 * i for i in range(31)]  # per mille
VOLS = [int(mpmath.mpf("0.05") * mpmath.mpf(60) ** (mpmath.mpf(i) / 15) * 10**6) * 10**12 for i in range(16)]
TAUS = [HOUR, 4 * HOUR, DAY, 7 * DAY, 30 * DAY, 91 * DAY, 182 * DAY, YEAR, 2 * YEAR]
RATES = [0, 5 * 10**16]


# --- chain == model, bit for bit ---------------------------------------------------------


@DIFF
@given(x=st.one_of(st.integers(MIN_INT, EXP_MAX + 1), st.integers(-45 * WAD, EXP_MAX - 1)))
def test_exp__chain__equals_model(harness, x):
    assert_same(harness.exp, fixed.exp, x)


@DIFF
@given(x=st.one_of(st.integers(0, MAX_UINT), log_uniform(1, 10**60)))
def test_ln__chain__equals_model(harness, x):
    assert_same(harness.ln, fixed.ln, x)


@DIFF
@given(x=st.one_of(st.integers(0, MAX_UINT), st.integers(0, MAX_UINT // WAD), log_uniform(1, 10**40)))
def test_sqrt__chain__equals_model(harness, x):
    assert_same(harness.sqrt, fixed.sqrt, x)


@DIFF
@given(x=st.one_of(st.just(0), log_uniform(10**12, 10**30)), y=st.integers(0, 20 * WAD))
def test_pow__chain__equals_model(harness, x, y):
    assert_same(harness.pow, fixed.pow, x, y)


@DIFF
@given(x=wide_int)
def test_ncdf__chain__equals_model(harness, x):
    assert_same(harness.ncdf, fixed.ncdf, x)


@DIFF
@given(x=wide_int)
def test_npdf__chain__equals_model(harness, x):
    assert_same(harness.npdf, fixed.npdf, x)


@settings(DIFF, max_examples=examples(120))
@given(spot=prices, strike=prices, vol=vols, tau=taus, rate=rates, is_call=st.booleans())
def test_bs_price__chain__equals_model(harness, spot, strike, vol, tau, rate, is_call):
    assert_same(harness.bs_price, fixed.bs_price, spot, strike, vol, tau, rate, is_call)


@settings(DIFF, max_examples=examples(120))
@given(spot=prices, strike=prices, vol=vols, tau=taus, rate=rates, is_call=st.booleans())
def test_bs_greeks__chain__equals_model(harness, spot, strike, vol, tau, rate, is_call):
    assert_same(harness.bs_greeks, fixed.bs_greeks, spot, strike, vol, tau, rate, is_call)


@pytest.mark.parametrize("is_call", [True, False])
@pytest.mark.parametrize(
    ("spot", "strike", "vol", "tau", "rate"),
    [
        (10**12, 10**30, 10**19, 5 * YEAR, 2 * 10**17),  # domain corners
        (10**30, 10**12, 10**16, 1, 0),
        (10**30, 10**30, 10**19, 5 * YEAR, 2 * 10**17),
        (10**12, 10**12, 10**16, 1, 2 * 10**17),
        (3000 * WAD, 3000 * WAD, 0, DAY, 10**17),  # vol == 0, rate > 0
    ],
)
def test_bs__domain_corners__chain_equals_model(harness, spot, strike, vol, tau, rate, is_call):
    assert_same(harness.bs_price, fixed.bs_price, spot, strike, vol, tau, rate, is_call)
    assert_same(harness.bs_greeks, fixed.bs_greeks, spot, strike, vol, tau, rate, is_call)


# --- accuracy against mpmath ---------------------------------------------------------------


def test_ncdf__vs_mpmath__within_hart_error(capsys):
    worst, at = mpmath.mpf(0), 0
    probes = [i * 10**15 for i in range(-10_000, 10_001)]  # [-10, 10] in steps of 0.001
    probes += [WEST_CUT - 1, WEST_CUT, -WEST_CUT, 9_104_500_000_000_000_000, CUT - 1, CUT, -CUT]
    for x in probes:
        err = abs(mp_wad(fixed.ncdf(x)) - mpmath.ncdf(mp_wad(x)))
        if err > worst:
            worst, at = err, x
    with capsys.disabled():
        print(f"\nncdf worst |err| on [-10, 10]: {float(worst):.3e} at x = {at / WAD}")
    assert worst <= HART_TOL


def test_npdf__vs_mpmath__within_wad_rounding():
    for i in range(-10_000, 10_001, 7):
        x = i * 10**15
        # `exp` is good to ~1 wei and the product with 1/sqrt(2 pi) is floored once.
        assert abs(mp_wad(fixed.npdf(x)) - mpmath.npdf(mp_wad(x))) <= mpmath.mpf("3e-18"), x


@pytest.mark.parametrize("x", [1, 10**6, 10**17, WAD, 2 * WAD, 10**19, 10**24, 10**30, 10**40, 10**60, MAX_INT])
def test_ln__vs_mpmath__within_a_few_wei(x):
    assert abs(mp_wad(fixed.ln(x)) - mpmath.log(mp_wad(x))) <= mpmath.mpf("3e-18")


@pytest.mark.parametrize("x", [-41 * WAD, -10 * WAD, -WAD, -1, 0, 1, WAD, 10 * WAD, 100 * WAD, EXP_MAX - 1])
def test_exp__vs_mpmath__within_relative_1e_17(x):
    ref = mpmath.exp(mp_wad(x))
    assert abs(mp_wad(fixed.exp(x)) - ref) <= ref * mpmath.mpf("1e-17") + mpmath.mpf("1e-18")


@pytest.mark.parametrize("x", [0, 1, 2, WAD, 2 * WAD, 10**30, MAX_UINT // WAD])
def test_sqrt__is_floor_of_exact_root(x):
    r = fixed.sqrt(x)
    assert r * r <= x * WAD < (r + 1) ** 2


def test_pow__vs_mpmath__within_relative_1e_15():
    for x, y in itertools.product([10**12, WAD // 3, WAD, 2 * WAD, 1234 * WAD, 10**30], [0, WAD // 2, WAD, 3 * WAD]):
        ref = mp_wad(x) ** mp_wad(y)
        assert abs(mp_wad(fixed.pow(x, y)) - ref) <= ref * mpmath.mpf("1e-15") + mpmath.mpf("1e-18"), (x, y)


def test_bs_price__dense_grid__within_1e_8_of_spot_and_parity(capsys):
    spot = 3000 * WAD
    worst_price, worst_parity, worst_case = mpmath.mpf(0), mpmath.mpf(0), None
    for case in grid(spot, MONEYNESS, VOLS, TAUS, RATES):
        ref = reference(*case)
        call, put = fixed.bs_price(*case, True), fixed.bs_price(*case, False)
        err = max(abs(mp_wad(call) - ref["call"]), abs(mp_wad(put) - ref["put"]))
        if err > worst_price:
            worst_price, worst_case = err, case
        worst_parity = max(worst_parity, abs(mp_wad(call) - mp_wad(put) - ref["parity"]))
    s = mp_wad(spot)
    with capsys.disabled():
        print(
            f"\nbs_price grid ({len(MONEYNESS) * len(VOLS) * len(TAUS) * len(RATES) * 2} prices): worst |err| "
            f"{float(worst_price / s):.3e} x spot at {worst_case}; parity {float(worst_parity / s):.3e} x spot"
        )
    assert worst_price <= PRICE_TOL * s
    assert worst_parity <= PRICE_TOL * s


@pytest.mark.parametrize("spot", [10**12, WAD, 10**23, 10**30])  # 1e-6, 1, 1e5 and 1e12 USD
def test_bs_price__any_spot_scale__within_1e_8_of_spot(spot):
    for case in grid(
        spot, [500, 800, 1000, 1250, 2000], [5 * 10**16, 6 * 10**17, 3 * WAD], [HOUR, 30 * DAY, 2 * YEAR], RATES
    ):
        ref = reference(*case)
        s = mp_wad(spot)
        for is_call in (True, False):
            assert abs(mp_wad(fixed.bs_price(*case, is_call)) - ref["call" if is_call else "put"]) <= PRICE_TOL * s, (
                case
            )
        parity = mp_wad(fixed.bs_price(*case, True)) - mp_wad(fixed.bs_price(*case, False))
        assert abs(parity - ref["parity"]) <= PRICE_TOL * s, case


def test_bs_greeks__dense_grid__match_analytic(capsys):
    """Delta to Hart's accuracy plus the error of d1; gamma and vega to 1e-9 relative.

    Absolute floors, for greeks too small for 1e-9 relative to be meaningful: `phi(d1)` is a
    WAD, so it carries its own rounding (~1e-18) plus `|d1| * err(d1)`; we allow 1e-17 of it,
    carried through the same factors, plus 2 wei of rounding of the result itself.
    """
    spot = 3000 * WAD
    rel = mpmath.mpf("1e-9")
    wei = mpmath.mpf(2) / WAD
    worst = {"delta": mpmath.mpf(0), "gamma": mpmath.mpf(0), "vega": mpmath.mpf(0)}
    for case in grid(spot, MONEYNESS, VOLS, TAUS, RATES):
        ref = reference(*case)
        s, sig, sqrt_t = mp_wad(spot), ref["sig"], mpmath.sqrt(mpmath.mpf(case[3]) / YEAR)
        for is_call in (True, False):
            delta, gamma, vega = (mp_wad(g) for g in fixed.bs_greeks(*case, is_call))
            ref_delta = ref["delta"] if is_call else ref["delta"] - 1
            # d1 carries the ~4 wei error of ln(S/K) + rT (ln, ln(1e18), rT each rounded)
            # divided by vol sqrt(T): 2e-15 at 5 % vol and 1 hour. phi <= 0.4.
            assert abs(delta - ref_delta) <= HART_TOL + mpmath.mpf("4e-18") / sig, (case, is_call)
            gamma_err = abs(gamma - ref["gamma"])
            assert gamma_err <= rel * ref["gamma"] + mpmath.mpf("1e-17") / (s * sig) + wei, (case, is_call)
            vega_err = abs(vega - ref["vega"])
            assert vega_err <= rel * ref["vega"] + mpmath.mpf("1e-17") * s * sqrt_t + wei, (case, is_call)
            worst["delta"] = max(worst["delta"], abs(delta - ref_delta))
            if ref["pdf"] > mpmath.mpf("1e-6"):  # phi(d1) has 12+ significant digits in WAD
                worst["gamma"] = max(worst["gamma"], gamma_err / ref["gamma"])
                worst["vega"] = max(worst["vega"], vega_err / ref["vega"])
    with capsys.disabled():
        print(
            f"\nbs_greeks grid: delta |err| {float(worst['delta']):.3e}; relative gamma {float(worst['gamma']):.3e}, "
            f"vega {float(worst['vega']):.3e} (where phi(d1) > 1e-6)"
        )


def test_ncdf_npdf__chain_sweep__equals_model(harness):
    for x in range(-41 * 25 * 10**16, 41 * 25 * 10**16 + 1, 25 * 10**16):  # [-10.25, 10.25] by 0.25
        assert harness.ncdf(x) == fixed.ncdf(x), x
        assert harness.npdf(x) == fixed.npdf(x), x


def test_bs_price__chain_grid__within_1e_8_of_spot(harness):
    spot = 2500 * WAD
    for case in grid(
        spot, [500, 900, 1000, 1100, 2000], [5 * 10**16, 8 * 10**17, 3 * WAD], [HOUR, 30 * DAY, 2 * YEAR], [0, 10**17]
    ):
        ref = reference(*case)
        call, put = harness.bs_price(*case, True), harness.bs_price(*case, False)
        assert (call, put) == (fixed.bs_price(*case, True), fixed.bs_price(*case, False)), case
        s = mp_wad(spot)
        assert abs(mp_wad(call) - ref["call"]) <= PRICE_TOL * s, case
        assert abs(mp_wad(put) - ref["put"]) <= PRICE_TOL * s, case
        assert abs(mp_wad(call) - mp_wad(put) - ref["parity"]) <= PRICE_TOL * s, case


# --- edge cases ------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", ["bs_price", "bs_greeks"])
@pytest.mark.parametrize(("spot", "strike"), [(0, WAD), (WAD, 0), (0, 0)])
def test_bs__zero_spot_or_strike__reverts(harness, fn, spot, strike):
    with ape.reverts(ZERO_PRICE):
        getattr(harness, fn)(spot, strike, WAD, DAY, 0, True)
    with pytest.raises(ValueError, match=ZERO_PRICE):
        getattr(fixed, fn)(spot, strike, WAD, DAY, 0, True)


def test_exp__at_max__reverts(harness):
    with ape.reverts("bs_math: exp overflow"):
        harness.exp(EXP_MAX)
    assert harness.exp(EXP_MAX - 1) > 5 * 10**76


def test_exp__known_values(harness):
    assert harness.exp(0) == WAD
    assert harness.exp(-41_446_531_673_892_822_313) == 0  # below 1 wei: clamped like `_wad_exp`
    assert harness.exp(MIN_INT) == 0
    assert abs(harness.exp(WAD) - 2_718_281_828_459_045_235) <= 1


@pytest.mark.parametrize("x", [0, 2**255, MAX_UINT])
def test_ln__outside_domain__reverts(harness, x):
    with ape.reverts("bs_math: ln out of domain"):
        harness.ln(x)


def test_ln__known_values(harness):
    assert harness.ln(WAD) == 0
    assert abs(harness.ln(2 * WAD) - 693_147_180_559_945_309) <= 1
    assert harness.ln(1) < -41 * WAD


def test_sqrt__above_max__reverts(harness):
    with ape.reverts("bs_math: sqrt overflow"):
        harness.sqrt(MAX_UINT // WAD + 1)
    assert harness.sqrt(4 * WAD) == 2 * WAD


def test_pow__zero_base__reverts(harness):
    with ape.reverts("bs_math: ln out of domain"):
        harness.pow(0, WAD)
    assert harness.pow(2 * WAD, 0) == WAD


def test_ncdf__symmetric_and_bounded(harness):
    assert harness.ncdf(0) == WAD // 2
    assert harness.ncdf(MIN_INT) == 0
    assert harness.ncdf(MAX_INT) == WAD
    assert harness.ncdf(-CUT) == 0
    assert harness.ncdf(CUT) == WAD
    # no cut at West's 7.07: the tail is priced down to its last wei (N(-8.75) ~ 1e-18)
    assert 0 < harness.ncdf(-WEST_CUT) < 10**6
    assert harness.ncdf(-8 * WAD) > 0
    assert harness.ncdf(-9 * WAD) == 0
    for x in (1, 10**15, WAD, 3 * WAD, WEST_CUT, CUT - 1):
        assert fixed.ncdf(x) + fixed.ncdf(-x) == WAD


@settings(max_examples=examples(400), deadline=None)
@given(x=st.integers(-11 * WAD, 11 * WAD), step=st.one_of(st.integers(1, 1000), st.integers(1, WAD)))
def test_ncdf__model__non_decreasing(x, step):
    assert fixed.ncdf(x) <= fixed.ncdf(x + step)


def test_ncdf__chain__non_decreasing_on_a_sweep(harness):
    values = [harness.ncdf(x * 10**17) for x in range(-93, 94, 3)]  # [-9.3, 9.3]
    assert values == sorted(values)
    assert values[0] == 0 and values[-1] == WAD


def test_npdf__beyond_cut__is_zero(harness):
    assert harness.npdf(10 * WAD) == 0
    assert harness.npdf(-10 * WAD) == 0
    assert fixed.npdf(9_105 * 10**15) == 0  # 0 in WAD before the cut: the cut changes nothing
    assert harness.npdf(0) == 398_942_280_401_432_678


@pytest.mark.parametrize("rate", [0, 10**17])
def test_bs_price__tau_zero__is_intrinsic(harness, rate):
    s = 3000 * WAD
    assert harness.bs_price(s, 2500 * WAD, 6 * 10**17, 0, rate, True) == 500 * WAD
    assert harness.bs_price(s, 2500 * WAD, 6 * 10**17, 0, rate, False) == 0
    assert harness.bs_price(s, 3500 * WAD, 6 * 10**17, 0, rate, False) == 500 * WAD
    assert harness.bs_price(s, 3500 * WAD, 6 * 10**17, 0, rate, True) == 0
    assert harness.bs_price(s, s, 6 * 10**17, 0, rate, True) == 0


def test_bs_price__vol_zero__is_discounted_intrinsic(harness):
    s, k, rate, tau = 3000 * WAD, 3000 * WAD, 10**17, YEAR
    kd = mp_wad(k) * mpmath.exp(-mpmath.mpf("0.1"))
    call = harness.bs_price(s, k, 0, tau, rate, True)
    assert abs(mp_wad(call) - (mp_wad(s) - kd)) <= mpmath.mpf("1e-14")
    assert harness.bs_price(s, k, 0, tau, rate, False) == 0
    # the vol -> 0 limit of the vol > 0 formula
    assert abs(harness.bs_price(s, k, 10**9, tau, rate, True) - call) <= 10


def test_bs_greeks__tau_zero__delta_by_moneyness(harness):
    s = 3000 * WAD
    assert tuple(harness.bs_greeks(s, 2000 * WAD, WAD, 0, 0, True)) == (WAD, 0, 0)
    assert tuple(harness.bs_greeks(s, 2000 * WAD, WAD, 0, 0, False)) == (0, 0, 0)
    assert tuple(harness.bs_greeks(s, 4000 * WAD, WAD, 0, 0, True)) == (0, 0, 0)
    assert tuple(harness.bs_greeks(s, 4000 * WAD, WAD, 0, 0, False)) == (-WAD, 0, 0)
    assert tuple(harness.bs_greeks(s, s, WAD, 0, 0, True)) == (WAD // 2, 0, 0)
    assert tuple(harness.bs_greeks(s, s, WAD, 0, 0, False)) == (-WAD // 2, 0, 0)
    # vol == 0 with a rate: moneyness against the discounted strike
    assert tuple(harness.bs_greeks(s, s, 0, YEAR, 10**17, True)) == (WAD, 0, 0)


def test_bs_price__deep_otm__is_zero_or_tiny(harness):
    s = 3000 * WAD
    assert harness.bs_price(s, 30_000 * WAD, 2 * 10**17, DAY, 0, True) == 0
    assert harness.bs_price(s, 300 * WAD, 2 * 10**17, DAY, 0, False) == 0
    # 2x OTM, a month at 60 %: tiny but priced, and matching mpmath
    ref = reference(s, 6000 * WAD, 6 * 10**17, 30 * DAY, 0)["call"]
    call = harness.bs_price(s, 6000 * WAD, 6 * 10**17, 30 * DAY, 0, True)
    assert 0 < call < WAD // 100
    assert abs(mp_wad(call) - ref) <= mpmath.mpf("1e-12") * 3000


def test_bs_price__deep_itm__is_forward_intrinsic(harness):
    s, k, rate, tau = 3000 * WAD, 300 * WAD, 5 * 10**16, 30 * DAY
    kd = mp_wad(k) * mpmath.exp(-mpmath.mpf("0.05") * tau / YEAR)
    call = harness.bs_price(s, k, 3 * 10**17, tau, rate, True)
    assert abs(mp_wad(call) - (mp_wad(s) - kd)) <= mpmath.mpf("1e-14")
    delta, gamma, vega = harness.bs_greeks(s, k, 3 * 10**17, tau, rate, True)
    assert (delta, gamma, vega) == (WAD, 0, 0)


def test_bs_price__call__non_decreasing_in_spot_and_vol(harness):
    k = 3000 * WAD
    by_spot = [fixed.bs_price(k * i // 1000, k, 6 * 10**17, 7 * DAY, 10**16, True) for i in range(500, 2001, 5)]
    assert by_spot == sorted(by_spot)
    by_vol = [fixed.bs_price(k, k * 11 // 10, v * 10**15, 7 * DAY, 10**16, True) for v in range(10, 10_001, 37)]
    assert by_vol == sorted(by_vol)
    chain_by_spot = [harness.bs_price(k * i // 100, k, 6 * 10**17, 7 * DAY, 0, True) for i in range(50, 201, 15)]
    assert chain_by_spot == sorted(chain_by_spot) and chain_by_spot[0] < chain_by_spot[-1]


@settings(max_examples=examples(200), deadline=None)
@given(spot=prices, strike=prices, vol=vols, tau=taus, rate=rates, bump=st.integers(1, 10**6))
def test_bs_price__model__call_non_decreasing_in_spot_and_vol(spot, strike, vol, tau, rate, bump):
    call = fixed.bs_price(spot, strike, vol, tau, rate, True)
    # bumps of at least 1e-6 relative: a one-wei bump is below the rounding of the result
    assert fixed.bs_price(spot + spot * bump // 10**6, strike, vol, tau, rate, True) >= call
    assert fixed.bs_price(spot, strike, vol + vol * bump // 10**6, tau, rate, True) >= call


@settings(max_examples=examples(200), deadline=None)
@given(spot=prices, strike=prices, vol=vols, tau=taus, rate=rates, is_call=st.booleans())
def test_bs_price__model__bounded_by_no_arbitrage(spot, strike, vol, tau, rate, is_call):
    price = fixed.bs_price(spot, strike, vol, tau, rate, is_call)
    kd = strike * fixed.exp(-(rate * tau // YEAR)) // WAD
    # call in [S - KD, S], put in [KD - S, KD]; the upper bounds hold exactly (N <= 1), the
    # lower ones to Hart's error (< 1e-16) on the larger price plus a few wei of rounding
    lower, upper = (spot - kd, spot) if is_call else (kd - spot, kd)
    assert price <= upper
    assert price >= lower - max(spot, strike) // 10**15 - 3


def test_bs__gas__well_under_15k(harness, admin, capsys):
    """Execution gas: `estimate_gas_cost` minus the intrinsic 21,000 and calldata cost."""

    def execution(method, *args) -> int:
        calldata = method.as_transaction(*args, sender=admin).data
        intrinsic = 21_000 + sum(16 if b else 4 for b in calldata)
        return method.estimate_gas_cost(*args, sender=admin) - intrinsic

    args = (3000 * WAD, 3300 * WAD, 6 * 10**17, 30 * DAY)
    gas = {
        "bs_price r=0": execution(harness.bs_price, *args, 0, True),
        "bs_price r=5%": execution(harness.bs_price, *args, 5 * 10**16, False),
        "bs_greeks r=5%": execution(harness.bs_greeks, *args, 5 * 10**16, True),
        "ncdf": execution(harness.ncdf, -12 * 10**17),
        "exp": execution(harness.exp, -12 * 10**17),
        "ln": execution(harness.ln, 12 * 10**17),
    }
    with capsys.disabled():
        print("\nexecution gas (excl. 21k + calldata):", gas)
    assert gas["bs_price r=5%"] < 15_000
    assert gas["bs_greeks r=5%"] < 15_000
    assert gas["ncdf"] < 3_000
