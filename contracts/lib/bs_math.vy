# pragma version ~=0.4.3
"""
@title Fixed-point math of the margin engine: exp, ln, sqrt, normal CDF, Black-Scholes
@custom:contract-name bs_math
@license GNU Affero General Public License v3.0 only
@notice A stateless module: every function is `@internal @pure`, so a contract
        imports it and calls it without `initializes`. Units:
        - WAD: fixed point with 18 decimals, `1.0 = 10**18`. Every argument and
          result is WAD unless it says otherwise.
        - time: seconds; `YEAR = 31_536_000` (365 days).
        - `spot`, `strike`: WAD USD per unit of the underlying; `vol`: WAD per
          year (60 % = 6e17); `rate`: WAD per year, continuously compounded.

        Formulas, with `T = tau / YEAR`, `D = exp(-rate * T)`:
        - `d1 = (ln(S / K) + rate * T) / (vol * sqrt(T)) + vol * sqrt(T) / 2`,
          `d2 = d1 - vol * sqrt(T)`
        - call `C = S * N(d1) - K * D * N(d2)`, put `P = K * D * N(-d2) - S * N(-d1)`
        - `tau == 0` or `vol == 0`: the discounted intrinsic value
          `C = max(S - K * D, 0)`, `P = max(K * D - S, 0)` (the limit `vol -> 0`)
        - delta `N(d1)` (call), `N(d1) - 1` (put); gamma `phi(d1) / (S * vol * sqrt(T))`;
          vega `S * phi(d1) * sqrt(T)` (per 1.00 of vol).
        - `N` is Hart's double-precision rational approximation as published
          by G. West, "Better approximations to cumulative normal functions"
          (2005): `N(-a) = exp(-a**2 / 2) * P(a) / Q(a)`, `P` of degree 6 and `Q` of
          degree 7, for every `a = |x|` where the result is not 0 in WAD (see `_ncdf`).

        Supported domain (no intermediate product overflows there; outside it
        the checked arithmetic reverts rather than wrapping): `spot`, `strike`
        in [1e-6, 1e12] USD, `vol` in [0.01, 10], `tau` up to 5 years, `rate`
        up to 10 per year. `exp` and `ln` are snekmate's `_wad_exp` and `_wad_ln`.

        Accuracy (tests/test_bs_math.py, against mpmath at 50 digits): Black-Scholes
        prices to well under 1e-8 * spot for K/S in [0.5, 2], vol in [5 %, 300 %],
        expiry in [1 hour, 2 years]; `N` to ~4e-17 everywhere.
"""

from snekmate.utils import math


# @dev 1.0 in WAD fixed point.
WAD: constant(uint256) = 10**18
# @dev Seconds per year (365 days); `tau / YEAR` is the time to expiry in years.
YEAR: constant(uint256) = 31_536_000
# @dev `ln(10**18)` in WAD, rounded down (41.44653167389282231232...).
LN_1E18: constant(int256) = 41_446_531_673_892_822_312
# @dev `1 / sqrt(2 * pi)` in WAD, rounded to nearest (0.398942280401432677939...).
INV_SQRT_2PI: constant(uint256) = 398_942_280_401_432_678
# @dev snekmate's `_wad_exp` asserts its argument is below this (`exp` of it overflows int256).
EXP_MAX: constant(int256) = 135_305_999_368_893_231_589
# @dev For `|x| >= 9.1045`, `exp(-x**2 / 2)` is below 1 wei, so `N(-|x|)` and `phi(x)` are 0
#      in WAD; `_ncdf` and `_npdf` return 0 (or 1) from `|x| >= 10` on without computing, which
#      changes no result and keeps `x * x` from overflowing.
CUT: constant(int256) = 10 * 10**18

# @dev Hart's numerator `P(a) = P6 a^6 + ... + P0` (West 2005), coefficients in WAD.
P6: constant(uint256) = 35_262_496_599_891_100
P5: constant(uint256) = 700_383_064_443_688_000
P4: constant(uint256) = 6_373_962_203_531_650_000
P3: constant(uint256) = 33_912_866_078_383_000_000
P2: constant(uint256) = 112_079_291_497_871_000_000
P1: constant(uint256) = 221_213_596_169_931_000_000
P0: constant(uint256) = 220_206_867_912_376_000_000
# @dev Hart's denominator `Q(a) = Q7 a^7 + ... + Q0` (West 2005), coefficients in WAD.
#      `P0 / Q0 = 1/2` exactly, so `N(0) = 5e17` exactly.
Q7: constant(uint256) = 88_388_347_648_318_400
Q6: constant(uint256) = 1_755_667_163_182_640_000
Q5: constant(uint256) = 16_064_177_579_207_000_000
Q4: constant(uint256) = 86_780_732_202_946_100_000
Q3: constant(uint256) = 296_564_248_779_674_000_000
Q2: constant(uint256) = 637_333_633_378_831_000_000
Q1: constant(uint256) = 793_826_512_519_948_000_000
Q0: constant(uint256) = 440_413_735_824_752_000_000


@internal
@pure
def _exp(x: int256) -> uint256:
    """
    @dev `e**x` in WAD, via snekmate's `_wad_exp`.
    @notice Returns 0 for `x <= -41.446531673892822313e18` (the result is below 1 wei).
    @param x The exponent (WAD).
    @return uint256 `e**x` (WAD).
    """
    assert x < EXP_MAX, "bs_math: exp overflow"
    # `_wad_exp` never returns a negative value, so the conversion cannot revert.
    return convert(math._wad_exp(x), uint256)


@internal
@pure
def _ln(x: uint256) -> int256:
    """
    @dev `ln(x)` in WAD, via snekmate's `_wad_ln`.
    @param x The argument (WAD), `0 < x <= max_value(int256)`.
    @return int256 `ln(x)` (WAD).
    """
    # One comparison for both ends: `x - 1` wraps to `max_value(uint256)` for `x == 0`.
    assert unsafe_sub(x, 1) < convert(max_value(int256), uint256), "bs_math: ln out of domain"
    return math._wad_ln(convert(x, int256))


@internal
@pure
def _sqrt(x: uint256) -> uint256:
    """
    @dev `floor(sqrt(x * 10**18))`, the square root of `x` in WAD.
    @param x The argument (WAD), at most `max_value(uint256) // 10**18`.
    @return uint256 `sqrt(x)` (WAD), rounded down.
    """
    assert x <= max_value(uint256) // WAD, "bs_math: sqrt overflow"
    # The assertion above bounds `x * WAD` by `max_value(uint256)`.
    return isqrt(unsafe_mul(x, WAD))


@internal
@pure
def _pow(x: uint256, y: uint256) -> uint256:
    """
    @dev `x**y = exp(y * ln(x))` in WAD.
    @notice `y * ln(x)` is rounded toward zero to a WAD before `exp`, so the relative
            error grows with the size of the exponent (about `1e-18 * (1 + |y ln x|)`).
    @param x The base (WAD), `x > 0`.
    @param y The exponent (WAD).
    @return uint256 `x**y` (WAD).
    """
    return self._exp(convert(y, int256) * self._ln(x) // convert(WAD, int256))


@internal
@pure
def _ncdf(x: int256) -> uint256:
    """
    @dev The standard normal CDF `N(x)` in WAD, in `[0, 10**18]`.
    @notice Hart's double-precision rational approximation (West 2005) in WAD
            arithmetic: `N(-a) = exp(-a**2 / 2) * P(a) / Q(a)` for `a = |x|`, and
            `N(x) = 1 - N(-x)` for `x > 0`. Non-decreasing in `x`; `N(0) = 5e17`.
    @custom:security West switches to a continued fraction at `a >= 7.07106781186547`
            and returns 0 beyond 37: that keeps the *relative* error of a double small
            deep in the tail. In WAD only the absolute error counts, and the rational
            function stays within 3.4e-21 of `N(-a)` on [7, 10] (mpmath), so it is used up
            to where `exp(-a**2 / 2)` underflows to 0 (a = 9.1045): absolute error ~4e-17
            everywhere. Cutting at 7.07 instead (returning 0 or 1) would err by up to
            7.7e-13 and make Black-Scholes prices jump (non-monotone in spot) where `d1`
            and `d2` straddle the cut. Symmetry `N(x) + N(-x) = 10**18` holds exactly,
            since both tails come from one evaluation at `|x|`.
    @param x The argument (WAD).
    @return uint256 `N(x)` (WAD).
    """
    if x <= -CUT:
        return 0
    if x >= CUT:
        return WAD

    # From here `a = |x| < 1e19`, and every `unsafe_` operation is bounded as follows:
    # `a * a < 1e38`; `P(a) < 2.2e23`, `Q(a) < 5.5e24` (WAD), so `P * a`, `Q * a` < 5.5e43;
    # `e <= 1e18`, so `e * P < 2.2e41`. Nothing is subtracted, so nothing underflows, and
    # `Q >= Q0 > 0`.
    a: uint256 = convert(x, uint256) if x >= 0 else convert(unsafe_sub(0, x), uint256)
    # The exponent `-a**2 / 2` lies in `(-50, 0]` (WAD): `_wad_exp` neither asserts
    # nor returns a negative value there (it returns 0 below -41.45).
    e: uint256 = convert(math._wad_exp(-convert(unsafe_div(unsafe_mul(a, a), 2 * WAD), int256)), uint256)

    p: uint256 = unsafe_add(unsafe_div(unsafe_mul(P6, a), WAD), P5)
    p = unsafe_add(unsafe_div(unsafe_mul(p, a), WAD), P4)
    p = unsafe_add(unsafe_div(unsafe_mul(p, a), WAD), P3)
    p = unsafe_add(unsafe_div(unsafe_mul(p, a), WAD), P2)
    p = unsafe_add(unsafe_div(unsafe_mul(p, a), WAD), P1)
    p = unsafe_add(unsafe_div(unsafe_mul(p, a), WAD), P0)

    q: uint256 = unsafe_add(unsafe_div(unsafe_mul(Q7, a), WAD), Q6)
    q = unsafe_add(unsafe_div(unsafe_mul(q, a), WAD), Q5)
    q = unsafe_add(unsafe_div(unsafe_mul(q, a), WAD), Q4)
    q = unsafe_add(unsafe_div(unsafe_mul(q, a), WAD), Q3)
    q = unsafe_add(unsafe_div(unsafe_mul(q, a), WAD), Q2)
    q = unsafe_add(unsafe_div(unsafe_mul(q, a), WAD), Q1)
    q = unsafe_add(unsafe_div(unsafe_mul(q, a), WAD), Q0)

    # `tail = N(-a) <= 1/2` (equal at `a = 0`): `P / Q` is at most `P0 / Q0 = 1/2`.
    tail: uint256 = unsafe_div(unsafe_mul(e, p), q)
    if x > 0:
        return unsafe_sub(WAD, tail)
    return tail


@internal
@pure
def _npdf(x: int256) -> uint256:
    """
    @dev The standard normal density `phi(x) = exp(-x**2 / 2) / sqrt(2 pi)` in WAD.
    @param x The argument (WAD).
    @return uint256 `phi(x)` (WAD).
    """
    # The cut changes no result (see `CUT`); it keeps `x * x` below `1e38`.
    if x <= -CUT or x >= CUT:
        return 0
    a: uint256 = convert(x, uint256) if x >= 0 else convert(unsafe_sub(0, x), uint256)
    # `a < 1e19`, so `a * a < 1e38`; the exponent is in `(-50, 0]` (WAD), so `_wad_exp`
    # neither asserts nor returns a negative value, and `e <= 1e18`, `e * INV_SQRT_2PI < 4e35`.
    e: uint256 = convert(math._wad_exp(-convert(unsafe_div(unsafe_mul(a, a), 2 * WAD), int256)), uint256)
    return unsafe_div(unsafe_mul(e, INV_SQRT_2PI), WAD)


@internal
@pure
def _check_prices(spot: uint256, strike: uint256):
    """
    @dev Black-Scholes needs a positive spot and strike.
    """
    assert spot != 0 and strike != 0, "bs_math: zero price"


@internal
@pure
def _rt(rate: uint256, tau: uint256) -> uint256:
    """
    @dev `r T = rate * tau / YEAR` (WAD), rounded down; `rate * tau` is checked, and below
         1.6e27 in the supported domain.
    """
    return rate * tau // YEAR


@internal
@pure
def _discount_factor(rt: uint256) -> uint256:
    """
    @dev `D = exp(-r T)` (WAD); the discounted strike is `K * D * 10**18` at 36 decimals
         (`strike * D`, exact, so one `D` serves every strike of an expiry).
    @param rt `rate * tau / YEAR` (WAD), rounded down (`_rt`).
    @return uint256 `exp(-rt)` (WAD), exactly `WAD` for `rt == 0`.
    """
    if rt == 0:
        # `exp(0) = 1`: skips `_wad_exp` (same result, ~800 gas less) when `rate == 0`.
        return WAD
    # Checked conversion: `rt < 2**255` as `rate * tau` did not overflow. Beyond
    # `rt > 41.4` (WAD) `_wad_exp` returns 0 and so does the discounted strike.
    return convert(math._wad_exp(-convert(rt, int256)), uint256)


@internal
@pure
def _discount(strike: uint256, rt: uint256) -> uint256:
    """
    @dev `K * exp(-r T)` at 36 decimals (WAD * WAD), the discounted strike.
    @param strike The strike (WAD USD).
    @param rt `rate * tau / YEAR` (WAD), rounded down.
    @return uint256 `K * D * 10**36`.
    """
    return strike * self._discount_factor(rt)


@internal
@pure
def _vol_time(vol: uint256, tau: uint256) -> uint256:
    """
    @dev `v = vol sqrt T` at 27 decimals, rounded down: `isqrt` of `(vol sqrt T)**2` at 54
         decimals. In the supported domain `vol**2 * tau * 10**18 < 1.6e64`; it is
         >= `10**18 // YEAR` (3.2e10) for `vol, tau >= 1`, so `v > 178_000`.
    @param vol The volatility (WAD per year).
    @param tau Seconds to expiry.
    """
    return isqrt(vol * vol * tau * WAD // YEAR)


@internal
@pure
def _log_moneyness(spot: uint256, strike: uint256, rt: uint256) -> int256:
    """
    @dev `ln(S / (K D)) = ln(S / K) + r T` (WAD), with `ln(S/K)` taken as
         `ln(S * 10**36 / K) - ln(10**18)` so that `S / K` keeps 18 more digits; it reverts
         ("bs_math: ln out of domain") only for `K > S * 10**36`, far outside the supported
         domain. `|result| < 1.7e20` there.
    @param rt `rate * tau / YEAR` (WAD), rounded down: the same `r T` as in `D`.
    """
    return self._ln(spot * 10**36 // strike) - LN_1E18 + convert(rt, int256)


@internal
@pure
def _d(spot: uint256, strike: uint256, vol: uint256, tau: uint256, rt: uint256) -> (int256, int256, uint256):
    """
    @dev `(ln(S / (K D)) / (vol sqrt T), vol sqrt T / 2)` in WAD, and `vol sqrt T` at 27
         decimals, with `ln(S / (K D)) = ln(S / K) + r T`. Then `d1 = m + h` and
         `d2 = m - h`. Requires `spot`, `strike`, `vol`, `tau` > 0.
    @custom:security `vol sqrt T` is kept at 27 decimals: with `vol = 0.01` and `tau = 1 s`
            it is ~1.8e-6, and a WAD would carry only 7 significant digits.
    @param spot The spot price (WAD USD).
    @param strike The strike (WAD USD).
    @param vol The volatility (WAD per year).
    @param tau Seconds to expiry.
    @param rt `rate * tau / YEAR` (WAD), rounded down: the same `r T` as in `D`.
    @return int256 `m = ln(S / (K D)) / (vol sqrt T)` (WAD).
    @return int256 `h = vol sqrt T / 2` (WAD).
    @return uint256 `v = vol sqrt T` (27 decimals), `v > 0`.
    """
    v: uint256 = self._vol_time(vol, tau)
    log_m: int256 = self._log_moneyness(spot, strike, rt)
    return self._m(log_m, v), convert(v // (2 * 10**9), int256), v


@internal
@pure
def _m(log_m: int256, v: uint256) -> int256:
    """
    @dev `m = ln(S / (K D)) / (vol sqrt T)` (WAD), from `_log_moneyness` and `_vol_time`.
    """
    # `|log_m| < 1.7e20` (WAD) in the supported domain, so `log_m * 10**27 < 1.7e47`.
    return log_m * 10**27 // convert(v, int256)


@internal
@pure
def _n12(log_m: int256, v: uint256) -> (uint256, uint256):
    """
    @dev `N(d1)` and `N(d2)` (WAD) from `ln(S / (K D))` (`_log_moneyness`) and `v = vol sqrt T`
         (`_vol_time`, `v > 0`): `d1 = m + h`, `d2 = m - h` as in `_d`. A call and a put of
         the same strike and expiry share them (`_legs_value`).
    """
    m: int256 = self._m(log_m, v)
    h: int256 = convert(v // (2 * 10**9), int256)
    return self._ncdf(m + h), self._ncdf(m - h)


@internal
@pure
def _intrinsic(spot: uint256, kd: uint256, is_call: bool) -> uint256:
    """
    @dev The discounted intrinsic value `max(S - K D, 0)` (call) or `max(K D - S, 0)` (put),
         the price at `tau == 0` or `vol == 0`, floored.
    @param kd `K * D` at 36 decimals (`_discount`).
    """
    s: uint256 = spot * WAD
    if is_call:
        return (s - kd) // WAD if s > kd else 0
    return (kd - s) // WAD if kd > s else 0


@internal
@pure
def _legs_value(spot: uint256, kd: uint256, n1: uint256, n2: uint256, is_call: bool) -> uint256:
    """
    @dev The Black-Scholes price from `N(d1)`, `N(d2)` (`_n12`): call `S N(d1) - K D N(d2)`,
         put `K D (1 - N(d2)) - S (1 - N(d1))`. Both legs at 54 decimals, so the difference
         is floored once; clamped at 0 (rounding may otherwise make a worthless option
         slightly negative).
    @param kd `K * D` at 36 decimals (`_discount`).
    """
    long: uint256 = 0
    short: uint256 = 0
    if is_call:
        long = spot * n1 * WAD
        short = kd * n2
    else:
        # `n1, n2 <= WAD`: no underflow.
        long = kd * unsafe_sub(WAD, n2)
        short = spot * unsafe_sub(WAD, n1) * WAD
    if long <= short:
        return 0
    return unsafe_sub(long, short) // 10**36


@internal
@pure
def _bs_price(spot: uint256, strike: uint256, vol: uint256, tau: uint256, rate: uint256, is_call: bool) -> uint256:
    """
    @dev The Black-Scholes price of a European option (no dividend yield).
    @notice `tau == 0` or `vol == 0` give the discounted intrinsic value. The result is
            clamped at 0 (rounding may otherwise make a worthless option slightly
            negative). The two legs are subtracted at 54 decimals and floored once.
            Composed of `_rt`, `_discount`, `_intrinsic`, `_vol_time`, `_log_moneyness`,
            `_n12` and `_legs_value`, which the risk model's batch pricer shares.
    @param spot The spot price (WAD USD), > 0.
    @param strike The strike (WAD USD), > 0.
    @param vol The annualised volatility (WAD).
    @param tau Seconds to expiry.
    @param rate The continuously compounded interest rate (WAD per year).
    @param is_call True for a call, False for a put.
    @return uint256 The option price (WAD USD per unit).
    """
    self._check_prices(spot, strike)
    rt: uint256 = self._rt(rate, tau)
    # `K * D` at 36 decimals.
    kd: uint256 = self._discount(strike, rt)
    if tau == 0 or vol == 0:
        return self._intrinsic(spot, kd, is_call)
    v: uint256 = self._vol_time(vol, tau)
    n1: uint256 = 0
    n2: uint256 = 0
    n1, n2 = self._n12(self._log_moneyness(spot, strike, rt), v)
    return self._legs_value(spot, kd, n1, n2, is_call)


@internal
@pure
def _bs_greeks(
    spot: uint256, strike: uint256, vol: uint256, tau: uint256, rate: uint256, is_call: bool
) -> (int256, uint256, uint256):
    """
    @dev Black-Scholes delta, gamma and vega (no dividend yield).
    @notice `tau == 0` or `vol == 0`: gamma = vega = 0 and delta is the slope of the
            discounted intrinsic value: call 1 if `S > K D`, 0 if `S < K D`, and 1/2 at
            `S == K D` (the average of both sides, so put delta = call delta - 1 holds
            there too); put delta = call delta - 1.
    @param spot The spot price (WAD USD), > 0.
    @param strike The strike (WAD USD), > 0.
    @param vol The annualised volatility (WAD).
    @param tau Seconds to expiry.
    @param rate The continuously compounded interest rate (WAD per year).
    @param is_call True for a call, False for a put.
    @return int256 delta: `N(d1)` (call) or `N(d1) - 1` (put), WAD per unit.
    @return uint256 gamma: `phi(d1) / (S vol sqrt T)`, WAD per 1 USD of spot.
    @return uint256 vega: `S phi(d1) sqrt T`, WAD USD per 1.00 of vol.
    """
    self._check_prices(spot, strike)
    # `r T` (WAD), as in `_bs_price`.
    rt: uint256 = self._rt(rate, tau)

    if tau == 0 or vol == 0:
        kd: uint256 = self._discount(strike, rt)
        s: uint256 = spot * WAD
        call_delta: int256 = 0
        if s > kd:
            call_delta = convert(WAD, int256)
        elif s == kd:
            call_delta = convert(WAD // 2, int256)
        if is_call:
            return call_delta, 0, 0
        return call_delta - convert(WAD, int256), 0, 0

    m: int256 = 0
    h: int256 = 0
    v: uint256 = 0
    m, h, v = self._d(spot, strike, vol, tau, rt)
    d1: int256 = m + h
    n1: uint256 = self._ncdf(d1)
    pdf: uint256 = self._npdf(d1)

    delta: int256 = convert(n1, int256)
    if not is_call:
        # `n1 <= WAD`.
        delta = unsafe_sub(delta, convert(WAD, int256))
    # gamma (WAD) = (pdf / 1e18) / ((S / 1e18) (v / 1e27)) * 1e18 = pdf * 1e45 / (S v);
    # `pdf * 1e45 < 4e62` and `S * v < 1e30 * 2.3e28` in the supported domain.
    gamma: uint256 = pdf * 10**45 // (spot * v)
    # vega (WAD) = S phi sqrt(T) * 1e18 with `sqrt(T) = (v / 1e27) / (vol / 1e18)`, i.e.
    # `(S pdf // 1e18) * v // (vol * 1e9)`; `S pdf // 1e18 < 4e29` and `v < 2.3e28`.
    vega: uint256 = spot * pdf // WAD * v // (vol * 10**9)
    return delta, gamma, vega
