# pragma version ~=0.4.3
# pragma experimental-codegen
"""
@title crossmargin risk model
@notice The pricing half of the margin engine (SPECIFICATION.md §6): the Black-Scholes risk
        array of an option under every scenario of its underlying's grid, and the greeks
        view. Stateless: the engine passes everything an array depends on, so the engine
        keeps the arrays, epochs and listings that every margin check reads (no call here
        on that path), and calls `compute_array` only where an array is stale.

        Glossary (WAD = 1e18): see MarginEngine. A risk array is the option's value per
        unit under each scenario s, floor(value_s / quantum) shifted right by `shift`, the
        smallest shift that makes every lane fit LANE_BITS.
@custom:security `compute_array` is pure: its result depends only on its arguments, so the
        engine's arrays are the same numbers as when it priced them itself (and as the
        model's `compute_array`). Compiled with the venom code generator, as the engine was
        when the math lived there.
"""

from interfaces import IClearinghouse
from interfaces import IRiskEngine
from interfaces import IRiskModel
from interfaces import IVault
from lib import bs_math
from lib import fixed
from lib import risk_layout

implements: IRiskModel


interface IOracleRouter:
    def price_rounds(key_a: bytes32, key_b: bytes32, liquidation: bool) -> (uint256, uint80, uint256, uint80): view


interface IEngine:
    def margin(account: uint256) -> IRiskEngine.Margin: view
    def underlying_ids(name: bytes32) -> uint256: view
    def underlyings(underlying: uint256) -> Underlying: view
    def rate() -> uint256: view
    def VAULT() -> IVault: view
    def ORACLE() -> IOracleRouter: view
    def CLEARING() -> IClearinghouse: view


WAD: constant(uint256) = 10**18
IWAD: constant(int256) = 10**18
IMILLION: constant(int256) = 10**6
# @dev The engine's bounds (MarginEngine.vy): underlyings 1..MAX_UNDERLYINGS, at most
#      MAX_ASSETS collateral lines. Grid and risk-array layout: `lib/risk_layout.vy`.
MAX_UNDERLYINGS: constant(uint256) = 4
MAX_ASSETS: constant(uint256) = 16
M32: constant(uint256) = 2**32 - 1
M64: constant(uint256) = 2**64 - 1
CALL: constant(uint256) = 2
# @dev Term scaling of vol shocks: (TERM_BASE / max(T, TERM_FLOOR))^exponent.
TERM_BASE: constant(uint256) = 30 * 86_400
TERM_FLOOR: constant(uint256) = 86_400


struct Underlying:
    # the engine's `underlyings` getter (MarginEngine.vy `Underlying`); greeks read the keys
    name: bytes32
    spot_key: bytes32
    vol_key: bytes32
    perp: uint256
    quantum: uint256
    vol_up: uint256
    vol_down: uint256
    vol_floor: uint256
    term_exponent: uint256
    short_option_rate: uint256
    perp_rate: uint256
    scenarios: uint256


struct Greeks:
    underlying: uint256
    # units of underlying, per 1 USD of spot, USD per 1.00 of vol (all WAD)
    delta: int256
    gamma: int256
    vega: int256


# @dev The margin engine whose accounts `greeks` reads (its listings, rate and sources).
ENGINE: public(immutable(IEngine))
# @dev The engine's sources, read once at deployment.
CLEARING: public(immutable(IClearinghouse))
VAULT: public(immutable(IVault))
ORACLE: public(immutable(IOracleRouter))


@deploy
def __init__(engine: IEngine):
    ENGINE = engine
    CLEARING = staticcall engine.CLEARING()
    VAULT = staticcall engine.VAULT()
    ORACLE = staticcall engine.ORACLE()


@external
@pure
def compute_array(ctx: IRiskModel.ArrayContext, terms: IRiskModel.Terms) -> uint256[risk_layout.ARRAY_WORDS]:
    """
    @notice The option's value per unit under every scenario, at the epoch's spot, vol and
            opening time, in lanes of `quantum << shift` (rounded down), `shift` the
            smallest that makes every lane fit 19 bits. floor(floor(v / quantum) / 2**shift)
            = floor(v / (quantum << shift)): shifting the quanta is the same floor as
            dividing once. Reverts "risk: value out of range" only beyond 2**122 quanta per
            unit. An option expired by `ctx.now` (even if the epoch opened before its
            expiry) has no time value and no scenario risk: every lane is its intrinsic
            value at the settlement price once the clearinghouse has stored it, else its
            worst intrinsic value over the grid's spot shocks, flagged UNSETTLED (longs then
            count for nothing).
    @return Word 0 (epoch | shift | lanes 0..10 | UNSETTLED), words 1 and 2 (0 if unused).
    """
    shocks: uint256 = ctx.shocks
    expired: bool = terms.expiry <= ctx.now
    # opened_at <= now < expiry when not expired
    tau: uint256 = 0
    if not expired:
        tau = terms.expiry - ctx.opened_at
    # term scaling of the vol shocks: p = (30d / max(T, 1d))^exponent
    p: uint256 = bs_math._pow(TERM_BASE * WAD // max(tau, TERM_FLOOR), shocks >> 192)
    vol_up: uint256 = ctx.vol * (WAD + (shocks & M64) * p // WAD) // WAD
    down: uint256 = max((shocks >> 128) & M64, WAD - min(((shocks >> 64) & M64) * p // WAD, WAD))
    vol_down: uint256 = ctx.vol * down // WAD
    is_call: bool = terms.kind == CALL
    quanta: uint256[risk_layout.MAX_SCENARIOS] = empty(uint256[risk_layout.MAX_SCENARIOS])
    # the OR of all values has the bit length of the largest; `most` is the largest
    top: uint256 = 0
    most: uint256 = 0
    for s: uint256 in range(ctx.scenarios, bound=risk_layout.MAX_SCENARIOS):
        lane: uint256 = ctx.grid[s // risk_layout.GRID_LANES] >> (s % risk_layout.GRID_LANES * risk_layout.GRID_BITS)
        spot: uint256 = convert(convert(ctx.spot, int256) * (IMILLION + risk_layout._shock(lane)) // IMILLION, uint256)
        if expired and terms.settlement_price != 0:
            spot = terms.settlement_price
        move: uint256 = (lane >> 16) & 3
        vol: uint256 = ctx.vol
        if move == risk_layout.VOL_UP:
            vol = vol_up
        elif move == risk_layout.VOL_DOWN:
            vol = vol_down
        value: uint256 = bs_math._bs_price(spot, terms.strike, vol, tau, ctx.rate, is_call) // ctx.quantum
        quanta[s] = value
        top |= value
        most = max(most, value)
    scale: uint256 = 0
    for i: uint256 in range(256):
        if top >> scale <= risk_layout.LANE_MASK:
            break
        scale += 1
    assert scale <= risk_layout.MAX_SHIFT, "risk: value out of range"
    words: uint256[risk_layout.ARRAY_WORDS] = empty(uint256[risk_layout.ARRAY_WORDS])
    words[0] = (ctx.epoch & M32) | (scale << 32)
    if expired and terms.settlement_price == 0:
        words[0] |= risk_layout.UNSETTLED
    for s: uint256 in range(ctx.scenarios, bound=risk_layout.MAX_SCENARIOS):
        i: uint256 = 0
        bit: uint256 = 0
        i, bit = risk_layout._lane_at(s)
        q: uint256 = quanta[s]
        if expired:
            q = most
        words[i] |= (q >> scale) << bit
    return words


@external
@view
def greeks(account: uint256) -> DynArray[Greeks, MAX_UNDERLYINGS]:
    """
    @notice Delta, gamma and vega of the account per underlying it touches, at the live
            spot and vol (Black-Scholes for options; perps and tracking collateral are delta).
    @dev Values the account through the engine first, so it reads and reverts exactly as
         the engine's `margin` does. An underlying is touched by collateral tracking it, a
         perp or an option on it (as in the engine's valuation).
    """
    unused: IRiskEngine.Margin = staticcall ENGINE.margin(account)
    positions: IClearinghouse.Positions = self._positions(account)
    lines: DynArray[IVault.Collateral, MAX_ASSETS] = self._lines(account)
    optioned: uint256 = 0
    for word: uint256 in positions.options:
        optioned |= 1 << ((word >> 32) & 255)
    touched: uint256 = optioned
    for line: IClearinghouse.PerpLine in positions.perps:
        touched |= 1 << line.underlying
    # per line, the underlying it tracks (0 for none)
    tracks: DynArray[uint256, MAX_ASSETS] = []
    for line: IVault.Collateral in lines:
        u: uint256 = 0
        if line.underlying != empty(bytes32):
            u = staticcall ENGINE.underlying_ids(line.underlying)
        tracks.append(u)
        if u != 0:
            touched |= 1 << u
    rate: uint256 = staticcall ENGINE.rate()
    result: DynArray[Greeks, MAX_UNDERLYINGS] = []
    for u: uint256 in range(1, MAX_UNDERLYINGS + 1):
        if touched & (1 << u) == 0:
            continue
        result.append(self._greeks_of(u, optioned, rate, positions, lines, tracks))
    return result


@internal
@view
def _greeks_of(
    u: uint256,
    optioned: uint256,
    rate: uint256,
    positions: IClearinghouse.Positions,
    lines: DynArray[IVault.Collateral, MAX_ASSETS],
    tracks: DynArray[uint256, MAX_ASSETS],
) -> Greeks:
    """
    @dev The greeks of underlying `u` (see `greeks`); `tracks[i]` is the underlying line i
         tracks (0 for none).
    """
    listing: Underlying = staticcall ENGINE.underlyings(u)
    # the spot, and the vol only where the account holds an option on u (as the engine)
    vol_key: bytes32 = empty(bytes32)
    if optioned & (1 << u) != 0:
        vol_key = listing.vol_key
    # spot and vol (WAD), in memory: the stack is full here
    prices: uint256[2] = empty(uint256[2])
    spot_round: uint80 = 0
    vol_round: uint80 = 0
    prices[0], spot_round, prices[1], vol_round = staticcall ORACLE.price_rounds(listing.spot_key, vol_key, False)
    delta: int256 = 0
    for line: IClearinghouse.PerpLine in positions.perps:
        if line.underlying == u:
            delta = line.size
    for i: uint256 in range(len(lines), bound=MAX_ASSETS):
        if tracks[i] == u:
            delta += convert(lines[i].balance, int256)
    # delta, gamma, vega of the options (in memory: the stack is full here)
    sums: int256[3] = [delta, 0, 0]
    for word: uint256 in positions.options:
        if (word >> 32) & 255 != u:
            continue
        terms: int256[3] = self._option_greeks(prices, word, rate)
        sums[0] += terms[0]
        sums[1] += terms[1]
        sums[2] += terms[2]
    return Greeks(underlying=u, delta=sums[0], gamma=sums[1], vega=sums[2])


@internal
@view
def _option_greeks(prices: uint256[2], word: uint256, rate: uint256) -> int256[3]:
    """
    @dev Delta, gamma and vega of the option position `word` at spot and vol `prices`:
         size times the per-unit Black-Scholes greeks, each floored.
    """
    size: int256 = fixed._word_size(word)
    instrument: IClearinghouse.Instrument = staticcall CLEARING.instrument(word & M32)
    d: int256 = 0
    g: uint256 = 0
    v: uint256 = 0
    d, g, v = bs_math._bs_greeks(
        prices[0], instrument.strike, prices[1], self._tau(instrument.expiry, block.timestamp), rate, instrument.kind == CALL
    )
    return [
        fixed._floor_div(size * d, IWAD),
        fixed._floor_div(size * convert(g, int256), IWAD),
        fixed._floor_div(size * convert(v, int256), IWAD),
    ]


@internal
@view
def _positions(account: uint256) -> IClearinghouse.Positions:
    # one call site: the decoder of this struct is large
    return staticcall CLEARING.positions(account)


@internal
@view
def _lines(account: uint256) -> DynArray[IVault.Collateral, MAX_ASSETS]:
    cash: int256 = 0
    lines: DynArray[IVault.Collateral, MAX_ASSETS] = []
    cash, lines = staticcall VAULT.account_state(account)
    return lines




@internal
@pure
def _tau(expiry: uint256, at: uint256) -> uint256:
    if expiry <= at:
        return 0
    return expiry - at
