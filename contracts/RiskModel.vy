# pragma version ~=0.4.3
# pragma nonreentrancy on
# pragma experimental-codegen
"""
@title crossmargin risk model
@notice The pricing and configuration half of the margin engine (SPECIFICATION.md §6): the
        Black-Scholes risk array of an option under every scenario of its underlying's grid,
        the greeks view, and the owner's risk configuration (`list_underlying`, `set_grid`,
        `set_risk_params`, `set_concentration`, `set_params`), validated here and written
        into the engine through its risk-model-only `configure_*` setters. Stateless apart
        from its owner: the engine passes everything an array depends on and keeps the
        arrays, epochs, listings and parameters that every margin check reads (no call here
        on that path), and calls `compute_array` only where an array is stale.

        Glossary (WAD = 1e18): see MarginEngine. A risk array is the option's value per
        unit under each scenario s, floor(value_s / quantum) shifted right by `shift`, the
        smallest shift that makes every lane fit LANE_BITS.
@custom:security `compute_array` is pure: its result depends only on its arguments, so the
        engine's arrays are the same numbers as when it priced them itself (and as the
        model's `compute_array`). Compiled with the venom code generator, as the engine was
        when the math lived there. The owner paths call only the engine, which holds its
        own lock; every external function but the pure ones holds this contract's.
"""

from snekmate.auth import ownable
from snekmate.auth import ownable_2step

from interfaces import IClearinghouse
from interfaces import IMarkets
from interfaces import IRiskEngine
from interfaces import IRiskModel
from interfaces import IVault
from lib import bs_math
from lib import fixed
from lib import risk_layout

initializes: ownable
initializes: ownable_2step[ownable := ownable]

exports: (
    ownable_2step.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
)

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
    def MARKETS() -> IMarkets: view
    def underlying_count() -> uint256: view
    def grid(underlying: uint256) -> (DynArray[int256, risk_layout.MAX_SCENARIOS], DynArray[uint256, risk_layout.MAX_SCENARIOS], DynArray[uint256, risk_layout.MAX_SCENARIOS]): view
    def configure_underlying(name: bytes32, keys: uint256) -> uint256: nonpayable
    def configure_risk(underlying: uint256, risk: uint256, shocks: uint256): nonpayable
    def configure_grid(underlying: uint256, scenarios: uint256, words: uint256[risk_layout.GRID_WORDS]): nonpayable
    def configure_params(params: uint256): nonpayable


WAD: constant(uint256) = 10**18
IWAD: constant(int256) = 10**18
IMILLION: constant(int256) = 10**6
# @dev The engine's bounds (MarginEngine.vy): underlyings 1..MAX_UNDERLYINGS, at most
#      MAX_ASSETS collateral lines. Grid and risk-array layout: `lib/risk_layout.vy`.
MAX_UNDERLYINGS: constant(uint256) = 16
MAX_ASSETS: constant(uint256) = 16
# @dev Words of the clearinghouse's `positions().options` (two positions each).
MAX_PAIRS: constant(uint256) = 64
M32: constant(uint256) = 2**32 - 1
M64: constant(uint256) = 2**64 - 1
M128: constant(uint256) = 2**128 - 1
# @dev The shock bits of a grid lane (an int16, see risk_layout).
SHOCK_MASK: constant(uint256) = 2**16 - 1
CALL: constant(uint256) = 2
# @dev Most options one `compute_arrays` call prices (the engine's MAX_BATCH).
MAX_BATCH: constant(uint256) = 64
# @dev Term scaling of vol shocks: (TERM_BASE / max(T, TERM_FLOOR))^exponent.
TERM_BASE: constant(uint256) = 30 * 86_400
TERM_FLOOR: constant(uint256) = 86_400

# @dev Grid shocks and weights are in millionths (1e6 = 100%) at the interface.
MILLION: constant(uint256) = 10**6
# @dev Oracle keys of an underlying are at most 16 bytes (the engine keeps both in one word).
LOW128: constant(uint256) = 2**128 - 1
# @dev Configuration bounds (WAD unless stated). Every bound fits the 64-bit field the
#      engine packs it in (its `Listing` and `params`).
MIN_IM_FACTOR: constant(uint256) = 10**18
MAX_IM_FACTOR: constant(uint256) = 3 * 10**18
MIN_ARRAY_AGE: constant(uint256) = 60
MAX_ARRAY_AGE: constant(uint256) = 86_400
MAX_RATE: constant(uint256) = 2 * 10**17
MAX_ADDON_RATE: constant(uint256) = 2 * 10**17
MIN_QUANTUM: constant(uint256) = 10**6
MAX_QUANTUM: constant(uint256) = 10**16
MAX_VOL_SHOCK: constant(uint256) = 5 * 10**18
MIN_VOL_FLOOR: constant(uint256) = 10**16
MAX_TERM_EXPONENT: constant(uint256) = 10**18
MAX_SPOT_SHOCK: constant(int256) = 3 * 10**6
MIN_SPOT_SHOCK: constant(int256) = -95 * 10**4
# @dev Most spot levels of a grid (runs of scenarios with one nonzero shock; the default grid
#      has 8): it bounds the logarithms a stale array costs, hence the worst liquidation's
#      gas (SPECIFICATION.md, limits); a spot-by-vol grid lists a level's scenarios together.
MAX_SPOT_LEVELS: constant(uint256) = 10
# @dev Most concentration free loss and depth (thousands of USD): the engine's 24-bit fields.
MAX_CONCENTRATION: constant(uint256) = 2**24 - 1


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
    concentration_free: uint256
    concentration_depth: uint256


struct Grid:
    # a batch's grid (`_decode`): scenarios; per scenario its shocked spot (WAD) and the
    # earlier (or same) scenario with the same spot whose `ln` it shares (bits 0-7), its vol move (8-9), its lane's word
    # (16-23) and bit (from 24) in the array
    scenarios: uint256
    spots: uint256[risk_layout.MAX_SCENARIOS]
    scen: uint256[risk_layout.MAX_SCENARIOS]
    # bit m set iff some scenario has vol move m; whether some shocked spot is 0 (which
    # `_bs_price` refuses wherever it is priced)
    moves: uint256
    zero_spot: bool


struct Expiry:
    # what the options of one expiry share (`_expiry`): tau (s), r T and D = exp(-r T)
    # (WAD), the vol of each move (WAD) and its `vol sqrt T` (27 decimals); bit m of `live`
    # set iff move m is priced with time value (tau and its vol both > 0, else at intrinsic
    # value as in `_bs_price`)
    expiry: uint256
    expired: bool
    tau: uint256
    rt: uint256
    df: uint256
    live: uint256
    vols: uint256[3]
    vts: uint256[3]


struct Strike:
    # what a call and a put of one strike and expiry share (`_strike`): K D (36 decimals)
    # and per scenario N(d1) | N(d2) << 128 (WAD, both <= 1e18)
    strike: uint256
    kd: uint256
    legs: uint256[risk_layout.MAX_SCENARIOS]


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
MARKETS: public(immutable(IMarkets))
VAULT: public(immutable(IVault))
ORACLE: public(immutable(IOracleRouter))


event UnderlyingListed:
    underlying: indexed(uint256)
    name: bytes32
    spot_key: bytes32
    vol_key: bytes32


event GridSet:
    underlying: indexed(uint256)
    shocks: DynArray[int256, risk_layout.MAX_SCENARIOS]
    vol_moves: DynArray[uint256, risk_layout.MAX_SCENARIOS]
    weights: DynArray[uint256, risk_layout.MAX_SCENARIOS]


event RiskParamsSet:
    underlying: indexed(uint256)
    quantum: uint256
    vol_up: uint256
    vol_down: uint256
    vol_floor: uint256
    term_exponent: uint256
    short_option_rate: uint256
    perp_rate: uint256


event ParamsSet:
    im_factor: uint256
    max_array_age: uint256
    rate: uint256


event ConcentrationSet:
    underlying: indexed(uint256)
    free: uint256
    depth: uint256


@deploy
def __init__(engine: IEngine):
    """
    @dev The deployer owns it until deploy hands it to the timelock. It configures the
         engine once the engine's owner has set it as `risk_model`.
    """
    ownable.__init__()
    ownable_2step.__init__()
    ENGINE = engine
    CLEARING = staticcall engine.CLEARING()
    MARKETS = staticcall engine.MARKETS()
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
            value at the settlement price once the markets contract has stored it, else its
            worst intrinsic value over the grid's spot shocks kept within ±30%
            (`EXPIRY_BAND`), flagged UNSETTLED (longs then count for nothing).
    @dev `compute_arrays` of one option.
    @return Word 0 (epoch | shift | lanes 0..10 | UNSETTLED), words 1 and 2 (0 if unused).
    """
    grid: Grid = self._decode(ctx)
    ex: Expiry = self._expiry(ctx, grid, terms.expiry)
    return self._array(ctx, terms, grid, ex, self._strike(grid, ex, terms.strike))


@external
@pure
def compute_arrays(
    ctx: IRiskModel.ArrayContext, terms: DynArray[IRiskModel.Terms, MAX_BATCH]
) -> DynArray[uint256[risk_layout.ARRAY_WORDS], MAX_BATCH]:
    """
    @notice The risk arrays of several options of one underlying in the same epoch: element
            i is `compute_array(ctx, terms[i])`, the same integers, in any order and batch.
    @dev Each intermediate is computed once per batch for the inputs it depends on: the
         shocked spots once per batch, `ln(S_s / (K D))` once per distinct scenario spot and
         strike, `vol_s sqrt T` and `D` once per expiry and vol level, `N(d1)` and `N(d2)`
         once per strike and expiry (a call and a put share them). The caches are keyed by
         the previous option's terms, so a batch sorted by expiry, then strike, with a
         strike's call and put adjacent, computes the least.
    """
    grid: Grid = self._decode(ctx)
    ex: Expiry = empty(Expiry)
    st: Strike = empty(Strike)
    result: DynArray[uint256[risk_layout.ARRAY_WORDS], MAX_BATCH] = []
    for t: IRiskModel.Terms in terms:
        if len(result) == 0 or t.expiry != ex.expiry:
            ex = self._expiry(ctx, grid, t.expiry)
            st = self._strike(grid, ex, t.strike)
        elif t.strike != st.strike:
            st = self._strike(grid, ex, t.strike)
        result.append(self._array(ctx, t, grid, ex, st))
    return result


# ---------------------------------------------------------------- owner: the engine's configuration


@external
def list_underlying(name: bytes32, spot_key: bytes32, vol_key: bytes32) -> uint256:
    """
    @notice Lists an underlying in the engine with the default grid and risk parameters of
            the spec: spot ±5/10/15% × vol up/unchanged/down, the tails −66% and +200% with
            vol up at weights 0.21 and 0.0693 (0.1386 / |move|), vol shocks +50% / −30% (floor 0.3) scaled by (30d / T)^0.3, add-ons 1% of
            spot per net short option and 1% of perp notional, lanes of 1e-6 USD (grid
            order: the engine's `DEFAULT_GRID`).
    @param name The underlying's name (e.g. "ETH"); collateral tracking it uses this name.
    @param spot_key Oracle key of its spot price (WAD USD), at most 16 bytes.
    @param vol_key Oracle key of its implied volatility (WAD), at most 16 bytes.
    @return The underlying id (1..16).
    """
    ownable._check_owner()
    self._require(name != empty(bytes32) and spot_key != empty(bytes32) and vol_key != empty(bytes32), "risk: zero key")
    self._require(
        convert(spot_key, uint256) & LOW128 == 0 and convert(vol_key, uint256) & LOW128 == 0, "risk: key over 16 bytes"
    )
    self._require(staticcall ENGINE.underlying_ids(name) == 0, "risk: already listed")
    self._require(staticcall ENGINE.underlying_count() < MAX_UNDERLYINGS, "risk: too many underlyings")
    u: uint256 = extcall ENGINE.configure_underlying(name, convert(spot_key, uint256) | (convert(vol_key, uint256) >> 128))
    log UnderlyingListed(underlying=u, name=name, spot_key=spot_key, vol_key=vol_key)
    self._set_risk_params(u, 10**12, 5 * 10**17, 3 * 10**17, 3 * 10**17, 3 * 10**17, 10**16, 10**16)
    # the default grid, which the engine reads from its code
    shocks: DynArray[int256, risk_layout.MAX_SCENARIOS] = []
    moves: DynArray[uint256, risk_layout.MAX_SCENARIOS] = []
    weights: DynArray[uint256, risk_layout.MAX_SCENARIOS] = []
    shocks, moves, weights = staticcall ENGINE.grid(u)
    log GridSet(underlying=u, shocks=shocks, vol_moves=moves, weights=weights)
    return u


@external
def set_grid(
    underlying: uint256,
    shocks: DynArray[int256, risk_layout.MAX_SCENARIOS],
    vol_moves: DynArray[uint256, risk_layout.MAX_SCENARIOS],
    weights: DynArray[uint256, risk_layout.MAX_SCENARIOS],
):
    """
    @notice Replaces an underlying's grid in the engine. Scenario 0 must be the base (0,
            unchanged, 1e6); shocks and weights (millionths) must be multiples of 100
            (0.01%); at most MAX_SPOT_LEVELS spot levels. Opens a new epoch, so every array
            is recomputed.
    @param shocks Spot shock per scenario (millionths, -95% .. +300%).
    @param vol_moves Vol move per scenario (0 down, 1 unchanged, 2 up).
    @param weights Weight per scenario (millionths, 0.01% .. 100%).
    """
    ownable._check_owner()
    self._check_underlying(underlying)
    n: uint256 = len(shocks)
    self._require(n >= 2 and len(vol_moves) == n and len(weights) == n, "risk: bad grid")
    self._require(shocks[0] == 0 and vol_moves[0] == risk_layout.VOL_NONE and weights[0] == MILLION, "risk: bad base scenario")
    words: uint256[risk_layout.GRID_WORDS] = empty(uint256[risk_layout.GRID_WORDS])
    # spot levels: scenarios whose nonzero shock differs from the one before (the risk model
    # prices one logarithm per level and strike, see MAX_SPOT_LEVELS)
    levels: uint256 = 0
    for s: uint256 in range(n, bound=risk_layout.MAX_SCENARIOS):
        self._require(shocks[s] >= MIN_SPOT_SHOCK and shocks[s] <= MAX_SPOT_SHOCK, "risk: shock out of bounds")
        if s != 0 and shocks[s] != 0 and shocks[s] != shocks[s - 1]:
            levels += 1
        self._require(vol_moves[s] <= risk_layout.VOL_UP, "risk: bad vol move")
        self._require(weights[s] != 0 and weights[s] <= MILLION, "risk: weight out of bounds")
        # stored in 0.01% units: shocks in [-9500, 30000] fit int16, weights <= 10000 uint14
        self._require(shocks[s] % risk_layout.IGRID_UNIT == 0 and weights[s] % risk_layout.GRID_UNIT == 0, "risk: grid not in 0.01% steps")
        lane: uint256 = (
            (convert(convert(shocks[s] // risk_layout.IGRID_UNIT, bytes32), uint256) & (2**16 - 1))
            | (vol_moves[s] << 16)
            | (weights[s] // risk_layout.GRID_UNIT << 18)
        )
        words[s // risk_layout.GRID_LANES] |= lane << (s % risk_layout.GRID_LANES * risk_layout.GRID_BITS)
    self._require(levels <= MAX_SPOT_LEVELS, "risk: too many spot levels")
    extcall ENGINE.configure_grid(underlying, n, words)
    log GridSet(underlying=underlying, shocks=shocks, vol_moves=vol_moves, weights=weights)


@external
def set_risk_params(
    underlying: uint256,
    quantum: uint256,
    vol_up: uint256,
    vol_down: uint256,
    vol_floor: uint256,
    term_exponent: uint256,
    short_option_rate: uint256,
    perp_rate: uint256,
):
    """
    @notice Sets an underlying's risk parameters in the engine (see the engine's
            `underlyings`). Opens a new epoch.
    @param quantum Wei of value per risk-array lane unit before the array's shift (1e6..1e16).
    @param vol_up Vol up shock at 30 days (WAD, <= 5).
    @param vol_down Vol down shock at 30 days (WAD, <= 1).
    @param vol_floor Least vol multiplier of the down move (WAD, 0.01..1).
    @param term_exponent Exponent of the term scaling (30d / T)^e (WAD, <= 1).
    @param short_option_rate Add-on per net short option unit, of spot (WAD, <= 0.2).
    @param perp_rate Add-on per perp unit, of notional (WAD, <= 0.2).
    """
    ownable._check_owner()
    self._check_underlying(underlying)
    self._set_risk_params(underlying, quantum, vol_up, vol_down, vol_floor, term_exponent, short_option_rate, perp_rate)


@external
def set_concentration(underlying: uint256, free: uint256, depth: uint256):
    """
    @notice Sets an underlying's concentration add-on (SPECIFICATION.md §6): per account,
            C_u = ceil(L_u · min(L_u − free, 4 · depth) / depth) when its weighted worst
            loss L_u is above `free`, else 0; `depth` 0 turns it off. Keeps the other risk
            parameters (read back from the engine). Opens a new epoch.
    @param free The loss L_u the add-on leaves free (thousands of USD, < 2**24).
    @param depth The depth the add-on scales with (thousands of USD, < 2**24; 0 = off).
    """
    ownable._check_owner()
    self._check_underlying(underlying)
    self._require(free <= MAX_CONCENTRATION and depth <= MAX_CONCENTRATION, "risk: concentration out of bounds")
    listing: Underlying = staticcall ENGINE.underlyings(underlying)
    # every field is below its width: the engine's own fields, and `free`, `depth` above
    extcall ENGINE.configure_risk(
        underlying,
        listing.quantum | (listing.perp_rate << 64) | (listing.short_option_rate << 128) | (free << 208) | (depth << 232),
        listing.vol_up | (listing.vol_down << 64) | (listing.vol_floor << 128) | (listing.term_exponent << 192),
    )
    log ConcentrationSet(underlying=underlying, free=free, depth=depth)


@external
def set_params(im_factor: uint256, max_array_age: uint256, rate: uint256):
    """
    @notice Sets the engine's IM factor (WAD, 1..3), array age limit (s, 60..86400) and
            Black-Scholes rate (WAD/year, <= 0.2). A new rate opens a new epoch everywhere.
    """
    ownable._check_owner()
    self._require(im_factor >= MIN_IM_FACTOR and im_factor <= MAX_IM_FACTOR, "risk: im factor out of bounds")
    self._require(max_array_age >= MIN_ARRAY_AGE and max_array_age <= MAX_ARRAY_AGE, "risk: array age out of bounds")
    self._require(rate <= MAX_RATE, "risk: rate out of bounds")
    # every field is below 2**64 by the bounds above
    extcall ENGINE.configure_params(im_factor | (max_array_age << 64) | (rate << 128))
    log ParamsSet(im_factor=im_factor, max_array_age=max_array_age, rate=rate)


# ---------------------------------------------------------------- views


@external
@view
def greeks(account: uint256) -> DynArray[Greeks, MAX_UNDERLYINGS]:
    """
    @notice Delta, gamma and vega of the account per underlying it touches, at the live
            spot and vol (Black-Scholes for options; perps, unexpired futures and tracking
            collateral are delta).
    @dev Values the account through the engine first, so it reads and reverts exactly as
         the engine's `margin` does. An underlying is touched by collateral tracking it, a
         perp or an option on it (as in the engine's valuation).
    """
    unused: IRiskEngine.Margin = staticcall ENGINE.margin(account)
    positions: IClearinghouse.Positions = self._positions(account)
    lines: DynArray[IVault.Collateral, MAX_ASSETS] = self._lines(account)
    optioned: uint256 = 0
    for i: uint256 in range(2 * len(positions.options), bound=2 * MAX_PAIRS):
        optioned |= 1 << ((fixed._pair_word(positions.options[i // 2], i % 2) >> 32) & 255)
    # a zero half (no position) marks underlying 0, which no option has
    optioned &= ~1
    touched: uint256 = optioned
    for line: IClearinghouse.PerpLine in positions.perps:
        touched |= 1 << line.underlying
    for word: uint256 in positions.futures:
        touched |= 1 << ((word >> 32) & 255)
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
            delta = fixed._perp_line(line.line)[0]
    for i: uint256 in range(len(lines), bound=MAX_ASSETS):
        if tracks[i] == u:
            delta += convert(lines[i].balance, int256)
    # a future is linear in the spot until its expiry (marked to the index), then it is not
    for word: uint256 in positions.futures:
        if (word >> 32) & 255 == u and block.timestamp < (word >> 40) & M32:
            delta += fixed._future_line(word)[0]
    # delta, gamma, vega of the options (in memory: the stack is full here)
    sums: int256[3] = [delta, 0, 0]
    for i: uint256 in range(2 * len(positions.options), bound=2 * MAX_PAIRS):
        word: uint256 = fixed._pair_word(positions.options[i // 2], i % 2)
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
    instrument: IClearinghouse.Instrument = staticcall MARKETS.instrument(word & M32)
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
@pure
def _decode(ctx: IRiskModel.ArrayContext) -> Grid:
    """
    @dev The grid of `ctx`: each scenario's shocked spot, its vol move, the scenario whose
         `ln(S / (K D))` it shares and its lane's place in the array.
    """
    g: Grid = empty(Grid)
    g.scenarios = ctx.scenarios
    # the previous scenario's shock bits (2**16: none), spot and the scenario whose `ln` it
    # shares
    shock: uint256 = SHOCK_MASK + 1
    spot: uint256 = 0
    same: uint256 = 0
    for s: uint256 in range(ctx.scenarios, bound=risk_layout.MAX_SCENARIOS):
        lane: uint256 = ctx.grid[s // risk_layout.GRID_LANES] >> (s % risk_layout.GRID_LANES * risk_layout.GRID_BITS)
        # the scenario whose `ln` this one shares: the previous one's if the shock is the
        # same, else the base's if the spot is the base's, else its own. The default grid
        # lists equal shocks together (and 0% after the base): 9 distinct spots, 9 `ln` per
        # strike. A custom grid's other repeats are priced again (the same integers).
        if lane & SHOCK_MASK != shock:
            shock = lane & SHOCK_MASK
            spot = convert(convert(ctx.spot, int256) * (IMILLION + risk_layout._shock(lane)) // IMILLION, uint256)
            same = s
            if s != 0 and g.spots[0] == spot:
                same = 0
            if spot == 0:
                g.zero_spot = True
        g.spots[s] = spot
        move: uint256 = (lane >> 16) & 3
        word: uint256 = 0
        bit: uint256 = 0
        word, bit = risk_layout._lane_at(s)
        g.scen[s] = same | (move << 8) | (word << 16) | (bit << 24)
        g.moves |= 1 << move
    return g


@internal
@pure
def _expiry(ctx: IRiskModel.ArrayContext, g: Grid, expiry: uint256) -> Expiry:
    """
    @dev What every option of one expiry shares (see `Expiry`), as `compute_array` and
         `_bs_price` compute it.
    """
    e: Expiry = empty(Expiry)
    e.expiry = expiry
    e.expired = expiry <= ctx.now
    if not e.expired:
        # opened_at <= now < expiry
        e.tau = expiry - ctx.opened_at
    shocks: uint256 = ctx.shocks
    # term scaling of the vol shocks: p = (30d / max(T, 1d))^exponent
    p: uint256 = bs_math._pow(TERM_BASE * WAD // max(e.tau, TERM_FLOOR), shocks >> 192)
    e.vols[risk_layout.VOL_UP] = ctx.vol * (WAD + (shocks & M64) * p // WAD) // WAD
    down: uint256 = max((shocks >> 128) & M64, WAD - min(((shocks >> 64) & M64) * p // WAD, WAD))
    e.vols[risk_layout.VOL_DOWN] = ctx.vol * down // WAD
    e.vols[risk_layout.VOL_NONE] = ctx.vol
    e.rt = bs_math._rt(ctx.rate, e.tau)
    e.df = bs_math._discount_factor(e.rt)
    if e.tau != 0:
        for m: uint256 in range(3):
            if g.moves & (1 << m) != 0 and e.vols[m] != 0:
                e.live |= 1 << m
                e.vts[m] = bs_math._vol_time(e.vols[m], e.tau)
    return e


@internal
@pure
def _strike(g: Grid, e: Expiry, strike: uint256) -> Strike:
    """
    @dev What a call and a put of one strike and expiry share (see `Strike`): `ln(S_s / (K D))`
         once per distinct spot, N(d1) and N(d2) per scenario priced with time value.
    """
    k: Strike = empty(Strike)
    k.strike = strike
    k.kd = strike * e.df
    if e.live == 0:
        return k
    # ln(spots[d] / (K D)) where bit d of `have` is set (d: the first scenario of a spot)
    lnm: int256[risk_layout.MAX_SCENARIOS] = empty(int256[risk_layout.MAX_SCENARIOS])
    have: uint256 = 0
    for s: uint256 in range(g.scenarios, bound=risk_layout.MAX_SCENARIOS):
        move: uint256 = (g.scen[s] >> 8) & 3
        if e.live & (1 << move) == 0:
            continue
        d: uint256 = g.scen[s] & 255
        if have & (1 << d) == 0:
            bs_math._check_prices(g.spots[d], strike)
            lnm[d] = bs_math._log_moneyness(g.spots[d], strike, e.rt)
            have |= 1 << d
        n1: uint256 = 0
        n2: uint256 = 0
        n1, n2 = bs_math._n12(lnm[d], e.vts[move])
        k.legs[s] = n1 | (n2 << 128)
    return k


@internal
@pure
def _array(ctx: IRiskModel.ArrayContext, t: IRiskModel.Terms, g: Grid, e: Expiry, k: Strike) -> uint256[risk_layout.ARRAY_WORDS]:
    """
    @dev One option's array (see `compute_array`) from the batch's caches: per scenario its
         value is `_legs_value` of the cached N(d1), N(d2) where its vol move is live, else
         `_intrinsic` (the branch `_bs_price` takes for tau or vol 0, so for every expired
         option).
    """
    is_call: bool = t.kind == CALL
    settled: bool = e.expired and t.settlement_price != 0
    if g.scenarios != 0:
        # `_bs_price` refuses a zero spot or strike in every scenario: the settlement price
        # is not 0, the shocked spots were checked once
        assert t.strike != 0 and (settled or not g.zero_spot), "bs_math: zero price"
    quanta: uint256[risk_layout.MAX_SCENARIOS] = empty(uint256[risk_layout.MAX_SCENARIOS])
    # the OR of all values has the bit length of the largest; `most` is the largest
    top: uint256 = 0
    most: uint256 = 0
    for s: uint256 in range(g.scenarios, bound=risk_layout.MAX_SCENARIOS):
        spot: uint256 = g.spots[s]
        if e.expired:
            # settled: the settlement price; else the shocked spot kept within
            # EXPIRY_BAND of the live spot (the grid's tails are not expiry moves)
            if settled:
                spot = t.settlement_price
            else:
                spot = min(max(spot, ctx.spot * (MILLION - risk_layout.EXPIRY_BAND) // MILLION), ctx.spot * (MILLION + risk_layout.EXPIRY_BAND) // MILLION)
        value: uint256 = 0
        if e.live & (1 << ((g.scen[s] >> 8) & 3)) == 0:
            value = bs_math._intrinsic(spot, k.kd, is_call)
        else:
            legs: uint256 = k.legs[s]
            value = bs_math._legs_value(spot, k.kd, legs & M128, legs >> 128, is_call)
        value //= ctx.quantum
        quanta[s] = value
        top |= value
        most = max(most, value)
    # the smallest shift that makes `top` fit LANE_BITS: its bit length beyond them
    scale: uint256 = self._bit_length(top)
    scale = scale - risk_layout.LANE_BITS if scale > risk_layout.LANE_BITS else 0
    assert scale <= risk_layout.MAX_SHIFT, "risk: value out of range"
    words: uint256[risk_layout.ARRAY_WORDS] = empty(uint256[risk_layout.ARRAY_WORDS])
    words[0] = (ctx.epoch & M32) | (scale << 32)
    if e.expired and t.settlement_price == 0:
        words[0] |= risk_layout.UNSETTLED
    for s: uint256 in range(g.scenarios, bound=risk_layout.MAX_SCENARIOS):
        q: uint256 = quanta[s]
        if e.expired:
            q = most
        c: uint256 = g.scen[s]
        # the lane's word (bits 16-23 of `c`) and bit (from bit 24), see `_decode`
        words[(c >> 16) & 255] |= (q >> scale) << (c >> 24)
    return words


@internal
@pure
def _bit_length(x: uint256) -> uint256:
    """
    @dev The number of bits of `x` (0 for 0), by halving.
    """
    n: uint256 = 0
    y: uint256 = x
    for half: uint256 in [128, 64, 32, 16, 8, 4, 2, 1]:
        if y >> half != 0:
            y >>= half
            n += half
    if y != 0:
        n += 1
    return n


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


# ---------------------------------------------------------------- owner internals


@internal
@pure
def _require(ok: bool, reason: String[40]):
    """
    @dev `assert ok, reason` in one place: owner paths only, where it saves code size.
    """
    if not ok:
        raise reason

@internal
@view
def _check_underlying(u: uint256):
    self._require(u != 0 and u <= staticcall ENGINE.underlying_count(), "risk: unknown underlying")


@internal
def _set_risk_params(
    u: uint256,
    quantum: uint256,
    vol_up: uint256,
    vol_down: uint256,
    vol_floor: uint256,
    term_exponent: uint256,
    short_option_rate: uint256,
    perp_rate: uint256,
):
    self._require(quantum >= MIN_QUANTUM and quantum <= MAX_QUANTUM, "risk: quantum out of bounds")
    self._require(vol_up <= MAX_VOL_SHOCK and vol_down <= WAD, "risk: vol shock out of bounds")
    self._require(vol_floor >= MIN_VOL_FLOOR and vol_floor <= WAD, "risk: vol floor out of bounds")
    self._require(term_exponent <= MAX_TERM_EXPONENT, "risk: exponent out of bounds")
    self._require(short_option_rate <= MAX_ADDON_RATE and perp_rate <= MAX_ADDON_RATE, "risk: add-on out of bounds")
    # every field is below 2**64 by the bounds above; the concentration fields are kept
    listing: Underlying = staticcall ENGINE.underlyings(u)
    extcall ENGINE.configure_risk(
        u,
        quantum | (perp_rate << 64) | (short_option_rate << 128) | (listing.concentration_free << 208) | (listing.concentration_depth << 232),
        vol_up | (vol_down << 64) | (vol_floor << 128) | (term_exponent << 192),
    )
    log RiskParamsSet(
        underlying=u,
        quantum=quantum,
        vol_up=vol_up,
        vol_down=vol_down,
        vol_floor=vol_floor,
        term_exponent=term_exponent,
        short_option_rate=short_option_rate,
        perp_rate=perp_rate,
    )
