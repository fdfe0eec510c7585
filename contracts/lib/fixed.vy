# pragma version ~=0.4.3
"""
@title Signed fixed-point helpers and the position/funding formulas shared by the
       clearinghouse and the margin engine
@notice Vyper's `//` on signed integers truncates toward zero; these helpers round toward
        minus or plus infinity, which is what "rounding favours the protocol" needs for
        signed amounts.
"""

from snekmate.utils import math

# @dev 1.0 in signed fixed point.
IWAD: constant(int256) = 10**18


@internal
@pure
def _floor_div(a: int256, b: int256) -> int256:
    """
    @dev a / b rounded toward minus infinity, for b > 0.
    """
    q: int256 = a // b
    if a % b != 0 and a < 0:
        q -= 1
    return q


@internal
@pure
def _ceil_div(a: int256, b: int256) -> int256:
    """
    @dev a / b rounded toward plus infinity, for b > 0.
    """
    return -self._floor_div(-a, b)


@internal
@pure
def _funding_now(cumulative: int256, premium_ema: int256, updated_at: uint256, spot: uint256, cap: uint256, interval: uint256, now: uint256) -> int256:
    """
    @dev The cumulative funding index (WAD USD per long unit) accrued from `updated_at` to
         `now`: the EMA premium clamped to ±cap is paid per `interval` on the index price,
             F(now) = F + floor(clamp(ema) · spot · dt / (WAD · interval)).
    """
    if now <= updated_at:
        return cumulative
    c: int256 = convert(cap, int256)
    rate: int256 = min(max(premium_ema, -c), c)
    return cumulative + self._floor_div(rate * convert(spot * (now - updated_at), int256), IWAD * convert(interval, int256))


@internal
@pure
def _word(instrument: uint256, underlying: uint256, kind: uint256, size: int256) -> uint256:
    """
    @dev Packs an option position: instrument (32 bits) | underlying (8) | kind (8), and the
         size (int128, two's complement) in the top 128 bits.
    """
    return instrument | (underlying << 32) | (kind << 40) | (convert(convert(size, bytes32), uint256) << 128)


@internal
@pure
def _pair_word(pair: uint256, high: uint256) -> uint256:
    """
    @dev The full word (`_word`) of one half of a stored pair: the low half (`high` 0) or the
         high one (1). A half is instrument 32 | underlying 8 | kind 8 | size int80 (two's
         complement, bits 48..127); the arithmetic shift restores the size's sign. A zero half
         (no position) gives 0.
    """
    half: uint256 = (pair >> (128 * high)) << 128
    size: int256 = convert(convert(half, bytes32), int256) >> 176
    return (half >> 128) & (2**48 - 1) | (convert(convert(size, bytes32), uint256) << 128)


@internal
@pure
def _perp_line(line: uint256) -> (int256, int256):
    """
    @dev A stored perp position: size (int128, low half) and cost (int128, high half), two's
         complement; arithmetic shifts restore the signs.
    """
    v: int256 = convert(convert(line, bytes32), int256)
    return (v << 128) >> 128, v >> 128


@internal
@pure
def _funding_state(word: uint256) -> (int256, int256, uint256):
    """
    @dev A perp's stored funding state: cumulative index (int128, bits 0..127), premium EMA
         (int80, 128..207) and its update time (uint48, 208..255).
    """
    v: int256 = convert(convert(word, bytes32), int256)
    return (v << 128) >> 128, (v << 48) >> 176, word >> 208


@internal
@pure
def _word_size(word: uint256) -> int256:
    # the top 128 bits hold the size in two's complement; the arithmetic shift restores it
    return convert(convert(word, bytes32), int256) >> 128


@internal
@pure
def _future_line(word: uint256) -> (int256, int256):
    """
    @dev A stored future position's size and cost: instrument (bits 0..31) | underlying
         (32..39) | expiry (40..71, s) | size (int88, 72..159) | cost (int96, 160..255), two's
         complement; arithmetic shifts restore the signs.
    """
    v: int256 = convert(convert(word, bytes32), int256)
    return (v << 96) >> 168, v >> 160


@internal
@pure
def _exit_charge(old: int256, size: int256, pending: uint256) -> uint256:
    """
    @dev What a trade of `size` on a linear position of `old` pays for leaving a side with a
         pending charge (the clearinghouse's `pending_charge` word `pending`: longs per unit
         in bits 0..127, shorts in 128..255): the units it takes off that side times the
         side's pending charge per unit, rounded up (WAD USD). The clearinghouse charges it
         and the Lens previews it.
    """
    if old == 0 or (old > 0) == (size > 0):
        return 0
    per_unit: uint256 = pending >> 128
    if old > 0:
        per_unit = pending & (2**128 - 1)
    return math._mul_div(convert(min(abs(size), abs(old)), uint256), per_unit, 10**18, True)
