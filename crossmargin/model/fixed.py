"""Bit-exact Python replica of ``contracts/lib/bs_math.vy`` and snekmate's ``_wad_exp`` / ``_wad_ln``.

Every function returns exactly the integer the contract returns, and raises where the
contract reverts: ``ValueError`` with the contract's revert string for an ``assert``,
``ArithmeticError`` for a checked-arithmetic revert (overflow, underflow, division by zero).
Arguments outside their ABI type (``uint256`` / ``int256``) raise ``TypeError``.
The margin engine is differential-tested against this module, so each line follows the
Vyper source operation by operation, with Vyper's semantics:

- ``//`` on ``int256`` truncates toward zero (:func:`sdiv`), ``%`` takes the dividend's
  sign (:func:`smod`); Python's floor semantics differ for negative operands;
- ``>>`` on ``int256`` is arithmetic (Python's ``>>`` on ``int`` is too);
- ``<<`` and ``unsafe_*`` wrap modulo ``2**256``; checked ``+ - *`` revert out of range;
- EVM ``div`` by zero is 0 (only in Vyper's ``isqrt`` expansion).

Units: WAD (``10**18``) fixed point; time in seconds; ``YEAR = 31_536_000``.
"""

from __future__ import annotations

__all__ = [
    "EXP_MAX",
    "LN_1E18",
    "CUT",
    "WAD",
    "YEAR",
    "bs_greeks",
    "bs_price",
    "exp",
    "isqrt",
    "ln",
    "ncdf",
    "npdf",
    "pow",
    "sdiv",
    "smod",
    "sqrt",
    "wad_exp",
    "wad_ln",
]

WAD = 10**18
YEAR = 31_536_000
LN_1E18 = 41_446_531_673_892_822_312
INV_SQRT_2PI = 398_942_280_401_432_678
EXP_MAX = 135_305_999_368_893_231_589
# |x| beyond which N is 0 or 1 and phi is 0 without computing (exp underflows from 9.1045 on).
CUT = 10 * 10**18

# Hart's coefficients (West 2005) in WAD, highest degree first.
P = (
    35_262_496_599_891_100,
    700_383_064_443_688_000,
    6_373_962_203_531_650_000,
    33_912_866_078_383_000_000,
    112_079_291_497_871_000_000,
    221_213_596_169_931_000_000,
    220_206_867_912_376_000_000,
)
Q = (
    88_388_347_648_318_400,
    1_755_667_163_182_640_000,
    16_064_177_579_207_000_000,
    86_780_732_202_946_100_000,
    296_564_248_779_674_000_000,
    637_333_633_378_831_000_000,
    793_826_512_519_948_000_000,
    440_413_735_824_752_000_000,
)

_MOD = 2**256
_MASK = _MOD - 1
_MAX_U = _MASK
_MAX_I = 2**255 - 1
_MIN_I = -(2**255)


# --- Vyper / EVM integer semantics -------------------------------------------------------


def _wrap_i(v: int) -> int:
    """Wraps ``v`` to ``int256`` (two's complement), as ``unsafe_*`` and ``<<`` do."""
    v &= _MASK
    return v - _MOD if v > _MAX_I else v


def _u(v: int) -> int:
    """A checked ``uint256`` result: raises where Vyper's checked arithmetic reverts."""
    if not 0 <= v <= _MAX_U:
        raise ArithmeticError("uint256 out of range")
    return v


def _i(v: int) -> int:
    """A checked ``int256`` result: raises where Vyper's checked arithmetic reverts."""
    if not _MIN_I <= v <= _MAX_I:
        raise ArithmeticError("int256 out of range")
    return v


def sdiv(a: int, b: int) -> int:
    """Signed division truncating toward zero, as Vyper's ``//`` on ``int256`` (EVM ``SDIV``).

    Args:
        a: The dividend.
        b: The divisor, non-zero.

    Returns:
        ``a / b`` rounded toward zero.

    Raises:
        ArithmeticError: ``b == 0`` (a checked ``//`` reverts).
    """
    if b == 0:
        raise ArithmeticError("division by zero")
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def smod(a: int, b: int) -> int:
    """Signed remainder with the dividend's sign, as Vyper's ``%`` on ``int256`` (EVM ``SMOD``).

    Args:
        a: The dividend.
        b: The divisor, non-zero.

    Returns:
        ``a - b * sdiv(a, b)``.

    Raises:
        ArithmeticError: ``b == 0``.
    """
    if b == 0:
        raise ArithmeticError("modulo by zero")
    r = abs(a) % abs(b)
    return -r if a < 0 else r


def _arg_u(*values: int) -> None:
    """ABI bounds of ``uint256`` arguments: the contract cannot be called with anything else."""
    for v in values:
        if not 0 <= v <= _MAX_U:
            raise TypeError(f"{v} is not a uint256")


def _arg_i(x: int) -> None:
    """ABI bounds of an ``int256`` argument."""
    if not _MIN_I <= x <= _MAX_I:
        raise TypeError(f"{x} is not an int256")


def _udiv(a: int, b: int) -> int:
    """Checked ``uint256`` ``//``: reverts on a zero divisor."""
    if b == 0:
        raise ArithmeticError("division by zero")
    return a // b


def _to_uint(v: int) -> int:
    """``convert(v, uint256)`` of an ``int256``: reverts if negative."""
    if v < 0:
        raise ArithmeticError("negative to uint256")
    return v


def _to_int(v: int) -> int:
    """``convert(v, int256)`` of a ``uint256``: reverts above ``max_value(int256)``."""
    if v > _MAX_I:
        raise ArithmeticError("uint256 to int256 out of range")
    return v


def isqrt(x: int) -> int:
    """Vyper's builtin ``isqrt``, expanded as the compiler emits it (Babylonian, 7 steps).

    Args:
        x: A ``uint256``.

    Returns:
        ``floor(sqrt(x))``.
    """

    def div(a: int, b: int) -> int:  # EVM DIV: 0 for a zero divisor
        return 0 if b == 0 else a // b

    y, z = x, 181
    if y >= 2 ** (128 + 8):
        y, z = y >> 128, (z << 64) & _MASK
    if y >= 2 ** (64 + 8):
        y, z = y >> 64, (z << 32) & _MASK
    if y >= 2 ** (32 + 8):
        y, z = y >> 32, (z << 16) & _MASK
    if y >= 2 ** (16 + 8):
        y, z = y >> 16, (z << 8) & _MASK
    z = div((z * ((y + 2**16) & _MASK)) & _MASK, 2**18)
    for _ in range(7):
        z = div((div(x, z) + z) & _MASK, 2)
    t = div(x, z)
    return z if z < t else t


# --- snekmate.utils.math ---------------------------------------------------------------


def _log2(x: int) -> int:
    """snekmate ``_log2(x, False)``: ``floor(log2(x))``, and 0 for ``x == 0``."""
    return x.bit_length() - 1 if x else 0


def wad_exp(x: int) -> int:
    """snekmate ``math._wad_exp``: ``e**x`` in WAD (signed in, signed out).

    Args:
        x: The exponent (WAD, ``int256``).

    Returns:
        ``e**x`` (WAD); 0 for ``x <= -41.446531673892822313e18``.

    Raises:
        ValueError: ``"math: wad_exp overflow"`` for ``x >= 135.305999368893231589e18``.
    """
    if x <= -41_446_531_673_892_822_313:
        return 0
    if not x < 135_305_999_368_893_231_589:
        raise ValueError("math: wad_exp overflow")

    x = sdiv(_wrap_i(x << 78), 5**18)
    k = _wrap_i(sdiv(_wrap_i(x << 96), 54_916_777_467_707_473_351_141_471_128) + 2**95) >> 96
    x = _wrap_i(x - _wrap_i(k * 54_916_777_467_707_473_351_141_471_128))

    y = _wrap_i(
        (_wrap_i(_wrap_i(x + 1_346_386_616_545_796_478_920_950_773_328) * x) >> 96)
        + 57_155_421_227_552_351_082_224_309_758_442
    )
    p = _wrap_i(
        _wrap_i(
            _wrap_i(
                (_wrap_i(_wrap_i(_wrap_i(y + x) - 94_201_549_194_550_492_254_356_042_504_812) * y) >> 96)
                + 28_719_021_644_029_726_153_956_944_680_412_240
            )
            * x
        )
        + _wrap_i(4_385_272_521_454_847_904_659_076_985_693_276 << 96)
    )

    q = _wrap_i(
        (_wrap_i(_wrap_i(x - 2_855_989_394_907_223_263_936_484_059_900) * x) >> 96)
        + 50_020_603_652_535_783_019_961_831_881_945
    )
    q = _wrap_i((_wrap_i(q * x) >> 96) - 533_845_033_583_426_703_283_633_433_725_380)
    q = _wrap_i((_wrap_i(q * x) >> 96) + 3_604_857_256_930_695_427_073_651_918_091_429)
    q = _wrap_i((_wrap_i(q * x) >> 96) - 14_423_608_567_350_463_180_887_372_962_807_573)
    q = _wrap_i((_wrap_i(q * x) >> 96) + 26_449_188_498_355_588_339_934_803_723_976_023)

    r = sdiv(p, q)  # unsafe_div: SDIV, q has no zeros

    shift = _to_uint(_wrap_i(195 - k))
    product = ((r & _MASK) * 3_822_833_074_963_236_453_042_738_258_902_158_003_155_416_615_667) & _MASK
    return _to_int(product >> shift)


def wad_ln(x: int) -> int:
    """snekmate ``math._wad_ln``: ``ln(x)`` in WAD (signed in, signed out).

    Args:
        x: The argument (WAD, ``int256``), ``x >= 0``.

    Returns:
        ``ln(x)`` (WAD); 0 for ``x == 0`` (as snekmate does).

    Raises:
        ValueError: ``"math: wad_ln undefined"`` for ``x < 0``.
    """
    if not x >= 0:
        raise ValueError("math: wad_ln undefined")
    if x == 0:
        return 0

    k = _wrap_i(_to_int(_log2(x)) - 96)
    x = _to_int(((x << _to_uint(_wrap_i(159 - k))) & _MASK) >> 159)

    p = _wrap_i(
        (_wrap_i(_wrap_i(x + 3_273_285_459_638_523_848_632_254_066_296) * x) >> 96)
        + 24_828_157_081_833_163_892_658_089_445_524
    )
    p = _wrap_i((_wrap_i(p * x) >> 96) + 43_456_485_725_739_037_958_740_375_743_393)
    p = _wrap_i((_wrap_i(p * x) >> 96) - 11_111_509_109_440_967_052_023_855_526_967)
    p = _wrap_i((_wrap_i(p * x) >> 96) - 45_023_709_667_254_063_763_336_534_515_857)
    p = _wrap_i((_wrap_i(p * x) >> 96) - 14_706_773_417_378_608_786_704_636_184_526)
    p = _wrap_i(_wrap_i(p * x) - _wrap_i(795_164_235_651_350_426_258_249_787_498 << 96))

    q = _wrap_i(
        (_wrap_i(_wrap_i(x + 5_573_035_233_440_673_466_300_451_813_936) * x) >> 96)
        + 71_694_874_799_317_883_764_090_561_454_958
    )
    q = _wrap_i((_wrap_i(q * x) >> 96) + 283_447_036_172_924_575_727_196_451_306_956)
    q = _wrap_i((_wrap_i(q * x) >> 96) + 401_686_690_394_027_663_651_624_208_769_553)
    q = _wrap_i((_wrap_i(q * x) >> 96) + 204_048_457_590_392_012_362_485_061_816_622)
    q = _wrap_i((_wrap_i(q * x) >> 96) + 31_853_899_698_501_571_402_653_359_427_138)
    q = _wrap_i((_wrap_i(q * x) >> 96) + 909_429_971_244_387_300_277_376_558_375)

    r = sdiv(p, q)  # unsafe_div: SDIV, q has no zeros in the domain

    return (
        _wrap_i(
            _wrap_i(
                _wrap_i(r * 1_677_202_110_996_718_588_342_820_967_067_443_963_516_166)
                + _wrap_i(
                    k * 16_597_577_552_685_614_221_487_285_958_193_947_469_193_820_559_219_878_177_908_093_499_208_371
                )
            )
            + 600_920_179_829_731_861_736_702_779_321_621_459_595_472_258_049_074_101_567_377_883_020_018_308
        )
        >> 174
    )


# --- bs_math ------------------------------------------------------------------------------


def exp(x: int) -> int:
    """``bs_math._exp``: ``e**x`` in WAD.

    Args:
        x: The exponent (WAD, ``int256``).

    Returns:
        ``e**x`` (WAD, ``uint256``); 0 below ``-41.45e18``.

    Raises:
        ValueError: ``"bs_math: exp overflow"`` for ``x >= EXP_MAX``.
    """
    _arg_i(x)
    if not x < EXP_MAX:
        raise ValueError("bs_math: exp overflow")
    return _to_uint(wad_exp(x))


def ln(x: int) -> int:
    """``bs_math._ln``: ``ln(x)`` in WAD.

    Args:
        x: The argument (WAD, ``uint256``), ``0 < x <= max_value(int256)``.

    Returns:
        ``ln(x)`` (WAD, ``int256``).

    Raises:
        ValueError: ``"bs_math: ln out of domain"`` outside ``(0, 2**255)``.
    """
    _arg_u(x)
    if not ((x - 1) & _MASK) < _MAX_I:
        raise ValueError("bs_math: ln out of domain")
    return wad_ln(_to_int(x))


def sqrt(x: int) -> int:
    """``bs_math._sqrt``: ``floor(sqrt(x * 10**18))``, the WAD square root.

    Args:
        x: The argument (WAD, ``uint256``).

    Returns:
        ``sqrt(x)`` (WAD), rounded down.

    Raises:
        ValueError: ``"bs_math: sqrt overflow"`` for ``x > max_value(uint256) // 10**18``.
    """
    _arg_u(x)
    if not x <= _MAX_U // WAD:
        raise ValueError("bs_math: sqrt overflow")
    return isqrt(x * WAD)


def pow(x: int, y: int) -> int:
    """``bs_math._pow``: ``x**y = exp(y * ln(x))`` in WAD.

    Args:
        x: The base (WAD, ``uint256``), ``x > 0``.
        y: The exponent (WAD, ``uint256``).

    Returns:
        ``x**y`` (WAD).

    Raises:
        ValueError: ``"bs_math: ln out of domain"`` for ``x == 0``; ``"bs_math: exp overflow"``.
        ArithmeticError: ``y > max_value(int256)`` or ``y * ln(x)`` overflows ``int256``.
    """
    _arg_u(x, y)
    y_i = _to_int(y)
    return exp(sdiv(_i(y_i * ln(x)), WAD))


def _tail(a: int) -> int:
    """``N(-a)`` for ``0 <= a < CUT``: Hart's rational function times ``exp(-a**2/2)``."""
    e = _to_uint(wad_exp(-_to_int(a * a // (2 * WAD))))
    p = P[0]
    for c in P[1:]:
        p = p * a // WAD + c
    q = Q[0]
    for c in Q[1:]:
        q = q * a // WAD + c
    return e * p // q


def ncdf(x: int) -> int:
    """``bs_math._ncdf``: the standard normal CDF ``N(x)`` in WAD (Hart / West 2005).

    Args:
        x: The argument (WAD, ``int256``).

    Returns:
        ``N(x)`` in ``[0, 10**18]``; 0 / ``10**18`` once ``exp(-x**2/2)`` underflows (``|x| >= 9.1045``).
    """
    _arg_i(x)
    if x <= -CUT:
        return 0
    if x >= CUT:
        return WAD
    tail = _tail(abs(x))
    return WAD - tail if x > 0 else tail


def npdf(x: int) -> int:
    """``bs_math._npdf``: the standard normal density ``exp(-x**2/2) / sqrt(2 pi)`` in WAD.

    Args:
        x: The argument (WAD, ``int256``).

    Returns:
        ``phi(x)`` (WAD); 0 for ``|x| >= 10`` (it is 0 in WAD from ``|x| >= 9.1045`` anyway).
    """
    _arg_i(x)
    if x <= -CUT or x >= CUT:
        return 0
    a = abs(x)
    e = _to_uint(wad_exp(-_to_int(a * a // (2 * WAD))))
    return e * INV_SQRT_2PI // WAD


def _discount(strike: int, rt: int) -> int:
    """``K * exp(-rT)`` at 36 decimals."""
    if rt == 0:
        return _u(strike * WAD)
    return _u(strike * _to_uint(wad_exp(-_to_int(rt))))


def _d(spot: int, strike: int, vol: int, tau: int, rt: int) -> tuple[int, int, int]:
    """``(m, h, v)``: ``d1 = m + h``, ``d2 = m - h``; ``v = vol sqrt(T)`` at 27 decimals."""
    v = isqrt(_udiv(_u(_u(_u(vol * vol) * tau) * WAD), YEAR))
    log_m = _i(_i(ln(_udiv(_u(spot * 10**36), strike)) - LN_1E18) + _to_int(rt))
    m = sdiv(_i(log_m * 10**27), _to_int(v))
    return m, _to_int(v // (2 * 10**9)), v


def _check_prices(spot: int, strike: int, vol: int, tau: int, rate: int) -> None:
    _arg_u(spot, strike, vol, tau, rate)
    if not (spot != 0 and strike != 0):
        raise ValueError("bs_math: zero price")


def bs_price(spot: int, strike: int, vol: int, tau: int, rate: int, is_call: bool) -> int:
    """``bs_math._bs_price``: the Black-Scholes price of a European option (no dividends).

    Args:
        spot: The spot price (WAD USD), > 0.
        strike: The strike (WAD USD), > 0.
        vol: The annualised volatility (WAD).
        tau: Seconds to expiry.
        rate: The continuously compounded interest rate (WAD per year).
        is_call: True for a call, False for a put.

    Returns:
        The price (WAD USD per unit), >= 0; the discounted intrinsic value when
        ``tau == 0`` or ``vol == 0``.

    Raises:
        ValueError: ``"bs_math: zero price"`` if ``spot`` or ``strike`` is 0.
        ArithmeticError: where the contract's checked arithmetic reverts.
    """
    _check_prices(spot, strike, vol, tau, rate)
    rt = _u(rate * tau) // YEAR
    kd = _discount(strike, rt)

    if tau == 0 or vol == 0:
        s = _u(spot * WAD)
        if is_call:
            return (s - kd) // WAD if s > kd else 0
        return (kd - s) // WAD if kd > s else 0

    m, h, _ = _d(spot, strike, vol, tau, rt)
    n1 = ncdf(_i(m + h))
    n2 = ncdf(_i(m - h))
    if is_call:
        long = _u(_u(spot * n1) * WAD)
        short = _u(kd * n2)
    else:
        long = _u(kd * (WAD - n2))
        short = _u(_u(spot * (WAD - n1)) * WAD)
    if long <= short:
        return 0
    return (long - short) // 10**36


def bs_greeks(spot: int, strike: int, vol: int, tau: int, rate: int, is_call: bool) -> tuple[int, int, int]:
    """``bs_math._bs_greeks``: Black-Scholes delta, gamma and vega (no dividends).

    Args:
        spot: The spot price (WAD USD), > 0.
        strike: The strike (WAD USD), > 0.
        vol: The annualised volatility (WAD).
        tau: Seconds to expiry.
        rate: The continuously compounded interest rate (WAD per year).
        is_call: True for a call, False for a put.

    Returns:
        ``(delta, gamma, vega)``: delta ``N(d1)`` or ``N(d1) - 1`` (WAD per unit), gamma
        ``phi(d1) / (S vol sqrt T)`` (WAD per 1 USD of spot), vega ``S phi(d1) sqrt T``
        (WAD USD per 1.00 of vol). When ``tau == 0`` or ``vol == 0``: gamma = vega = 0
        and the call delta is 1, 1/2 or 0 as ``S`` is above, at or below ``K exp(-rT)``.

    Raises:
        ValueError: ``"bs_math: zero price"`` if ``spot`` or ``strike`` is 0.
        ArithmeticError: where the contract's checked arithmetic reverts.
    """
    _check_prices(spot, strike, vol, tau, rate)
    rt = _u(rate * tau) // YEAR

    if tau == 0 or vol == 0:
        kd = _discount(strike, rt)
        s = _u(spot * WAD)
        call_delta = WAD if s > kd else WAD // 2 if s == kd else 0
        return (call_delta, 0, 0) if is_call else (call_delta - WAD, 0, 0)

    m, h, v = _d(spot, strike, vol, tau, rt)
    d1 = _i(m + h)
    n1 = ncdf(d1)
    pdf = npdf(d1)
    delta = n1 if is_call else n1 - WAD
    gamma = _u(pdf * 10**45) // _u(spot * v)
    vega = _udiv(_u(_u(spot * pdf) // WAD * v), _u(vol * 10**9))
    return delta, gamma, vega
