# pragma version ~=0.4.3
# pragma nonreentrancy on
# pragma experimental-codegen
"""
@title crossmargin margin engine
@notice Values accounts with the portfolio margin of SPECIFICATION.md §6: the vault's
        collateral and cash and the clearinghouse's positions, under a scenario grid per
        underlying, with option values read from per-instrument risk arrays.

        Glossary (all amounts WAD = 1e18; 1 cash = 1 USD):
          grid      per underlying, up to 32 scenarios (spot shock, vol move, weight);
                    scenario 0 is always the base (no shock, weight 1)
          risk array per option, its value per unit under every scenario of its grid,
                    stored as 40-bit lanes of `quantum` wei (floor), computed once per
                    *epoch* of the underlying, at the epoch's opening time
          epoch     per underlying, a (spot round, vol round) pair seen by the engine; a new
                    epoch opens when either oracle round moves or the last one is older than
                    `max_array_age`. A check only uses arrays of the current epoch.

        Valuation of an account:
          equity = cash + Σ floor(collateral value) + Σ perps (size·spot − cost − funding owed)
                   + Σ options size·q0·quantum (longs at the floor lane, shorts at lane + 1)
          PnL_u(s) = floor(E_u·shock_s) + floor(Σ size·(q_s − q_0)·quantum)   E_u = linear
                   exposure (perp notional + value of collateral tracking u)
          L_u    = max(0, −min_s floor(w_s·PnL_u(s)))
          risk   = Σ_u L_u + perp add-on + short-option add-on + quantization add-on
          MM     = risk + Σ collateral value·mm_haircut
          IM     = ceil(risk·im_factor) + Σ collateral value·im_haircut
        Values round down and requirements up, so rounding favours the protocol.
@custom:security All state-changing entry points hold the lock (`pragma nonreentrancy on`).
        The engine only reads: the vault (`account_state`), the clearinghouse (`positions`,
        `instrument`) and the oracle router; it writes nothing but epochs and arrays. A
        margin check never values an option from an array of an older epoch: views compute
        a stale array in memory, state-changing checks store it. Compiled with the venom
        code generator (`experimental-codegen`): the legacy generator's output is 28 KB,
        over the EIP-170 limit; venom's is 23.9 KB.
"""

from snekmate.auth import ownable
from snekmate.auth import ownable_2step
from snekmate.utils import math

from interfaces import IClearinghouse
from interfaces import IRiskEngine
from interfaces import IVault
from lib import bs_math
from lib import fixed

initializes: ownable
initializes: ownable_2step[ownable := ownable]

exports: (
    ownable_2step.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
)

implements: IRiskEngine


interface IOracleRouter:
    def price(key: bytes32) -> uint256: view
    def price_round(key: bytes32) -> (uint256, uint80): view
    def check_sequencer() -> bool: view


WAD: constant(uint256) = 10**18
IWAD: constant(int256) = 10**18
MAX_ASSETS: constant(uint256) = 16
# @dev Underlying ids are 1..MAX_UNDERLYINGS (one bit each in masks; 0 means "none").
MAX_UNDERLYINGS: constant(uint256) = 4
MAX_SCENARIOS: constant(uint256) = 32
# @dev Hard bound on option positions per account (the margin loop's bound).
MAX_OPTIONS: constant(uint256) = 32
# @dev Batch bounds for keeper views and refreshes.
MAX_BATCH: constant(uint256) = 64

# @dev Grid shocks and weights are in millionths (1e6 = 100%).
MILLION: constant(uint256) = 10**6
IMILLION: constant(int256) = 10**6
# @dev Grid words pack 4 scenarios of 64 bits: shock int32 | vol move uint8 | weight uint24.
GRID_LANES: constant(uint256) = 4
GRID_WORDS: constant(uint256) = 8
VOL_DOWN: constant(uint256) = 0
VOL_NONE: constant(uint256) = 1
VOL_UP: constant(uint256) = 2
# @dev Risk-array words pack 6 lanes of 40 bits; lane 0 is the epoch, lane 1 + s scenario s.
LANE_BITS: constant(uint256) = 40
LANES: constant(uint256) = 6
LANE_MASK: constant(uint256) = 2**40 - 1
ARRAY_WORDS: constant(uint256) = 6

# @dev Instrument kinds.
PERP: constant(uint256) = 1
CALL: constant(uint256) = 2
PUT: constant(uint256) = 3

YEAR: constant(uint256) = 365 * 86_400
# @dev Term scaling of vol shocks: (TERM_BASE / max(T, TERM_FLOOR))^exponent.
TERM_BASE: constant(uint256) = 30 * 86_400
TERM_FLOOR: constant(uint256) = 86_400

# @dev Parameter bounds (WAD unless stated).
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
MIN_FUNDING_INTERVAL: constant(uint256) = 3_600
MAX_FUNDING_INTERVAL: constant(uint256) = 86_400
MAX_FUNDING_CAP: constant(uint256) = 5 * 10**16
MIN_EMA_WINDOW: constant(uint256) = 60
MAX_EMA_WINDOW: constant(uint256) = 86_400
# @dev Longest option listed (s); keeps every BS input inside bs_math's overflow bounds.
MAX_EXPIRY: constant(uint256) = 5 * YEAR


struct Underlying:
    # e.g. "ETH"; collateral whose vault `underlying` equals it is shocked with its spot
    name: bytes32
    # oracle keys of the spot price and implied volatility (both WAD)
    spot_key: bytes32
    vol_key: bytes32
    # instrument id of its perpetual, 0 until listed
    perp: uint256
    # wei of value per risk-array lane unit (lanes hold floor(value / quantum) < 2**40)
    quantum: uint256
    # vol shock parameters: up = 1 + vol_up·p, down = max(vol_floor, 1 − vol_down·p),
    # p = (30d / max(T, 1d))^term_exponent
    vol_up: uint256
    vol_down: uint256
    vol_floor: uint256
    term_exponent: uint256
    # add-on rates: per net short option unit, of spot; per perp unit, of notional
    short_option_rate: uint256
    perp_rate: uint256
    # scenarios in the grid
    scenarios: uint256


struct Context:
    # oracle reads of the underlying (WAD) and their round ids
    spot: uint256
    vol: uint256
    spot_round: uint80
    vol_round: uint80
    # current epoch and its opening time; `stored` iff the epoch record is in storage
    epoch: uint256
    opened_at: uint256
    stored: bool
    # grid
    scenarios: uint256
    grid: uint256[GRID_WORDS]
    quantum: uint256
    # aggregates of the account's exposure to this underlying
    exposure: int256
    option_pnl: int256[MAX_SCENARIOS]
    option_value: int256
    option_units: uint256
    net_calls: int256
    net_puts: int256
    perp_units: uint256


struct Book:
    cash: int256
    lines: DynArray[IVault.Collateral, MAX_ASSETS]
    # bit u set iff underlying u is touched by the account
    mask: uint256
    options: DynArray[uint256, MAX_OPTIONS]
    perp_size: int256[MAX_UNDERLYINGS + 1]
    ctx: Context[MAX_UNDERLYINGS + 1]
    # vault side of the valuation
    collateral_value: uint256
    mm_haircut: uint256
    im_haircut: uint256


struct UnderlyingRisk:
    underlying: uint256
    # scenario with the worst weighted PnL, that loss (WAD) and the unweighted PnL vector
    worst_scenario: uint256
    loss: uint256
    pnl: DynArray[int256, MAX_SCENARIOS]


struct Greeks:
    underlying: uint256
    # units of underlying, per 1 USD of spot, USD per 1.00 of vol (all WAD)
    delta: int256
    gamma: int256
    vega: int256


# @dev The vault holding collateral and cash.
VAULT: public(immutable(IVault))
# @dev The oracle router every price is read through.
ORACLE: public(immutable(IOracleRouter))

# @dev The clearinghouse holding instruments and positions.
CLEARING: public(immutable(IClearinghouse))
# @dev Oracle key of the settlement asset's USD feed (depeg circuit breaker), or empty.
settlement_key: public(bytes32)
# @dev IM = ceil(risk · im_factor) + IM haircuts (WAD, >= 1).
im_factor: public(uint256)
# @dev A risk array older than this (s) is never used.
max_array_age: public(uint256)
# @dev Black-Scholes rate (WAD per year).
rate: public(uint256)
# @dev Underlyings by id (1..underlying_count) and ids by name.
underlyings: public(HashMap[uint256, Underlying])
underlying_ids: public(HashMap[bytes32, uint256])
underlying_count: public(uint256)
# @dev Packed grid of each underlying (see GRID_LANES).
grid_words: HashMap[uint256, uint256[GRID_WORDS]]
# @dev Epoch record per underlying: spot round (80) | vol round (80) | epoch (32) | opened (64).
epochs: HashMap[uint256, uint256]
# @dev Risk arrays by instrument (see LANES).
arrays: HashMap[uint256, uint256[ARRAY_WORDS]]



event EpochOpened:
    underlying: indexed(uint256)
    epoch: uint256
    spot_round: uint80
    vol_round: uint80


event RiskArrayStored:
    instrument: indexed(uint256)
    epoch: uint256


event UnderlyingListed:
    underlying: indexed(uint256)
    name: bytes32
    spot_key: bytes32
    vol_key: bytes32


event GridSet:
    underlying: indexed(uint256)
    shocks: DynArray[int256, MAX_SCENARIOS]
    vol_moves: DynArray[uint256, MAX_SCENARIOS]
    weights: DynArray[uint256, MAX_SCENARIOS]


event RiskParamsSet:
    underlying: indexed(uint256)
    quantum: uint256
    vol_up: uint256
    vol_down: uint256
    vol_floor: uint256
    term_exponent: uint256
    short_option_rate: uint256
    perp_rate: uint256


event OiCapSet:
    instrument: indexed(uint256)
    oi_cap: uint256


event ParamsSet:
    im_factor: uint256
    max_array_age: uint256
    rate: uint256


event SettlementKeySet:
    key: bytes32


@deploy
def __init__(vault: IVault, oracle: IOracleRouter, clearing: IClearinghouse, settlement_key: bytes32):
    """
    @param settlement_key Oracle key of the settlement asset's USD feed, or empty.
    @dev Defaults from SPECIFICATION.md: IM factor 1.3, arrays at most 1 hour old, rate 0.
    """
    ownable.__init__()
    ownable_2step.__init__()
    VAULT = vault
    ORACLE = oracle
    CLEARING = clearing
    self.settlement_key = settlement_key
    self._set_params(13 * 10**17, 3_600, 0)
    log SettlementKeySet(key=settlement_key)


# ---------------------------------------------------------------- risk arrays and checks


@external
def refresh(instrument_ids: DynArray[uint256, MAX_BATCH]) -> uint256:
    """
    @notice Keeper entry: stores the current-epoch risk array of every listed option in
            `instrument_ids` whose array is stale. Perps and unknown ids are skipped.
    @return How many arrays were computed and stored.
    """
    contexts: Context[MAX_UNDERLYINGS + 1] = empty(Context[MAX_UNDERLYINGS + 1])
    loaded: uint256 = 0
    stored: uint256 = 0
    for instrument_id: uint256 in instrument_ids:
        instrument: IClearinghouse.Instrument = staticcall CLEARING.instrument(instrument_id)
        if instrument.kind != CALL and instrument.kind != PUT:
            continue
        u: uint256 = instrument.underlying
        if loaded & (1 << u) == 0:
            contexts[u] = self._current_context(u)
            loaded |= 1 << u
        if self.arrays[instrument_id][0] & LANE_MASK != contexts[u].epoch:
            self._store_array(instrument_id, self._compute_array(instrument, contexts[u]), contexts[u].epoch)
            stored += 1
    return stored


@external
def check_initial(account: uint256) -> int256:
    """
    @notice `equity - IM` (WAD) for the vault's withdrawal check; stores any stale risk
            array of the account first. Reverts while new risk is closed.
    """
    self._check_new_risk()
    m: IRiskEngine.Margin = self._refresh_margin(account)
    return m.equity - convert(m.initial, int256)


@external
def refresh_margin(account: uint256) -> IRiskEngine.Margin:
    """
    @notice Stores the account's stale risk arrays (opening epochs as needed), then returns
            its margin. The clearinghouse calls it after every trade.
    """
    return self._refresh_margin(account)


# ---------------------------------------------------------------- views


@external
@view
def margin(account: uint256) -> IRiskEngine.Margin:
    """
    @notice Equity, initial and maintenance requirement of `account` (all WAD).
    """
    return self._margin(self._view_book(account, 0))


@external
@view
def margin_adjusted(account: uint256, cash_adjust: int256) -> IRiskEngine.Margin:
    """
    @notice The margin with `cash_adjust` (WAD) subtracted from the account's cash: the
            clearinghouse values an account as it was before a trade with it.
    """
    return self._margin(self._view_book(account, cash_adjust))


@external
@view
def new_risk_open() -> bool:
    """
    @notice False while the L2 sequencer is down or in grace, or the settlement asset's
            feed is bad: then only trades that reduce risk go through.
    """
    return self._new_risk_open()


@external
@view
def check_new_risk() -> bool:
    """
    @notice Reverts with the oracle's reason while new risk is closed; true otherwise.
    """
    self._check_new_risk()
    return True


@external
@view
def spot_key(underlying: uint256) -> bytes32:
    return self.underlyings[underlying].spot_key


@external
@view
def margins(accounts: DynArray[uint256, MAX_BATCH]) -> DynArray[IRiskEngine.Margin, MAX_BATCH]:
    """
    @notice `margin` of many accounts in one call, for keepers.
    """
    result: DynArray[IRiskEngine.Margin, MAX_BATCH] = []
    for account: uint256 in accounts:
        result.append(self._margin(self._view_book(account, 0)))
    return result


@external
@view
def initial_health(account: uint256) -> int256:
    """
    @notice `equity - IM` (WAD); new risk needs it >= 0. Reverts while new risk is closed.
    """
    self._check_new_risk()
    m: IRiskEngine.Margin = self._margin(self._view_book(account, 0))
    return m.equity - convert(m.initial, int256)


@external
@view
def maintenance_health(account: uint256) -> int256:
    """
    @notice `equity - MM` (WAD); the account is liquidatable when it is negative. Never
            gated on the sequencer, so liquidation can always proceed.
    """
    m: IRiskEngine.Margin = self._margin(self._view_book(account, 0))
    return m.equity - convert(m.maintenance, int256)


@external
@view
def risk(account: uint256) -> DynArray[UnderlyingRisk, MAX_UNDERLYINGS]:
    """
    @notice Per underlying the account touches: the unweighted PnL of every scenario, the
            worst weighted scenario and its loss L_u (WAD).
    """
    book: Book = self._view_book(account, 0)
    result: DynArray[UnderlyingRisk, MAX_UNDERLYINGS] = []
    for u: uint256 in range(1, MAX_UNDERLYINGS + 1):
        if book.mask & (1 << u) == 0:
            continue
        pnl: int256[MAX_SCENARIOS] = self._scenario_pnl(book.ctx[u])
        vector: DynArray[int256, MAX_SCENARIOS] = []
        worst: int256 = 0
        worst_scenario: uint256 = 0
        for s: uint256 in range(book.ctx[u].scenarios, bound=MAX_SCENARIOS):
            vector.append(pnl[s])
            weighted: int256 = self._weighted(pnl[s], book.ctx[u].grid, s)
            if weighted < worst:
                worst = weighted
                worst_scenario = s
        result.append(UnderlyingRisk(underlying=u, worst_scenario=worst_scenario, loss=convert(-worst, uint256), pnl=vector))
    return result


@external
@view
def greeks(account: uint256) -> DynArray[Greeks, MAX_UNDERLYINGS]:
    """
    @notice Delta, gamma and vega of the account per underlying it touches, at the live
            spot and vol (Black-Scholes for options; perps and tracking collateral are delta).
    """
    book: Book = self._view_book(account, 0)
    result: DynArray[Greeks, MAX_UNDERLYINGS] = []
    for u: uint256 in range(1, MAX_UNDERLYINGS + 1):
        if book.mask & (1 << u) == 0:
            continue
        spot: uint256 = book.ctx[u].spot
        delta: int256 = book.perp_size[u]
        for line: IVault.Collateral in book.lines:
            if self.underlying_ids[line.underlying] == u:
                delta += convert(line.balance, int256)
        gamma: int256 = 0
        vega: int256 = 0
        for word: uint256 in book.options:
            if (word >> 32) & 255 != u:
                continue
            size: int256 = fixed._word_size(word)
            instrument: IClearinghouse.Instrument = staticcall CLEARING.instrument(word & (2**32 - 1))
            d: int256 = 0
            g: uint256 = 0
            v: uint256 = 0
            d, g, v = bs_math._bs_greeks(
                spot, instrument.strike, book.ctx[u].vol, self._tau(instrument.expiry, block.timestamp), self.rate, instrument.kind == CALL
            )
            delta += fixed._floor_div(size * d, IWAD)
            gamma += fixed._floor_div(size * convert(g, int256), IWAD)
            vega += fixed._floor_div(size * convert(v, int256), IWAD)
        result.append(Greeks(underlying=u, delta=delta, gamma=gamma, vega=vega))
    return result


@external
@view
def risk_array(instrument_id: uint256) -> (uint256, DynArray[uint256, MAX_SCENARIOS]):
    """
    @notice The stored risk array of an option: its epoch and lanes (value per unit under
            each scenario, in units of the underlying's `quantum`, rounded down).
    """
    instrument: IClearinghouse.Instrument = staticcall CLEARING.instrument(instrument_id)
    words: uint256[ARRAY_WORDS] = self.arrays[instrument_id]
    lanes: DynArray[uint256, MAX_SCENARIOS] = []
    for s: uint256 in range(self.underlyings[instrument.underlying].scenarios, bound=MAX_SCENARIOS):
        lanes.append(self._lane(words, s + 1))
    return words[0] & LANE_MASK, lanes


@external
@view
def epoch(underlying: uint256) -> (uint80, uint80, uint256, uint256):
    """
    @notice The stored epoch record: spot round, vol round, epoch number, opening time.
    """
    record: uint256 = self.epochs[underlying]
    return (
        convert(record >> 176, uint80),
        convert((record >> 96) & (2**80 - 1), uint80),
        (record >> 64) & (2**32 - 1),
        record & (2**64 - 1),
    )


@external
@view
def grid(underlying: uint256) -> (DynArray[int256, MAX_SCENARIOS], DynArray[uint256, MAX_SCENARIOS], DynArray[uint256, MAX_SCENARIOS]):
    """
    @notice The scenario grid: spot shocks and weights in millionths, vol moves (0 down,
            1 unchanged, 2 up).
    """
    words: uint256[GRID_WORDS] = self.grid_words[underlying]
    shocks: DynArray[int256, MAX_SCENARIOS] = []
    moves: DynArray[uint256, MAX_SCENARIOS] = []
    weights: DynArray[uint256, MAX_SCENARIOS] = []
    for s: uint256 in range(self.underlyings[underlying].scenarios, bound=MAX_SCENARIOS):
        shocks.append(self._shock(words, s))
        moves.append(self._move(words, s))
        weights.append(self._weight(words, s))
    return shocks, moves, weights


# ---------------------------------------------------------------- owner


@external
def list_underlying(name: bytes32, spot_key: bytes32, vol_key: bytes32) -> uint256:
    """
    @notice Lists an underlying with the default grid and risk parameters of the spec:
            spot ±5/10/15% × vol up/unchanged/down, ±30% with vol up at weight 0.35, vol
            shocks +50% / −30% (floor 0.3) scaled by (30d / T)^0.3, add-ons 1% of spot per
            net short option and 1% of perp notional, lanes of 1e-6 USD.
    @return The underlying id.
    """
    ownable._check_owner()
    assert name != empty(bytes32) and spot_key != empty(bytes32) and vol_key != empty(bytes32), "engine: zero key"
    assert self.underlying_ids[name] == 0, "engine: already listed"
    u: uint256 = self.underlying_count + 1
    assert u <= MAX_UNDERLYINGS, "engine: too many underlyings"
    self.underlying_count = u
    self.underlying_ids[name] = u
    self.underlyings[u].name = name
    self.underlyings[u].spot_key = spot_key
    self.underlyings[u].vol_key = vol_key
    log UnderlyingListed(underlying=u, name=name, spot_key=spot_key, vol_key=vol_key)
    self._set_risk_params(u, 10**12, 5 * 10**17, 3 * 10**17, 3 * 10**17, 3 * 10**17, 10**16, 10**16)
    shocks: DynArray[int256, MAX_SCENARIOS] = [0]
    moves: DynArray[uint256, MAX_SCENARIOS] = [VOL_NONE]
    weights: DynArray[uint256, MAX_SCENARIOS] = [MILLION]
    for i: int256 in range(-3, 4):
        for move: uint256 in [VOL_UP, VOL_NONE, VOL_DOWN]:
            if i == 0 and move == VOL_NONE:
                continue
            shocks.append(i * 50_000)
            moves.append(move)
            weights.append(MILLION)
    shocks.append(-300_000)
    moves.append(VOL_UP)
    weights.append(350_000)
    shocks.append(300_000)
    moves.append(VOL_UP)
    weights.append(350_000)
    self._set_grid(u, shocks, moves, weights)
    return u


@external
def set_grid(
    underlying: uint256,
    shocks: DynArray[int256, MAX_SCENARIOS],
    vol_moves: DynArray[uint256, MAX_SCENARIOS],
    weights: DynArray[uint256, MAX_SCENARIOS],
):
    """
    @notice Replaces an underlying's grid. Scenario 0 must be the base (0, unchanged, 1e6).
            Opens a new epoch, so every array is recomputed.
    """
    ownable._check_owner()
    self._check_underlying(underlying)
    self._set_grid(underlying, shocks, vol_moves, weights)


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
    @notice Sets an underlying's risk parameters (see `Underlying`). Opens a new epoch.
    """
    ownable._check_owner()
    self._check_underlying(underlying)
    self._set_risk_params(underlying, quantum, vol_up, vol_down, vol_floor, term_exponent, short_option_rate, perp_rate)


@external
def set_params(im_factor: uint256, max_array_age: uint256, rate: uint256):
    """
    @notice Sets the IM factor (WAD, 1..3), the array age limit (s, 60..86400) and the
            Black-Scholes rate (WAD/year, <= 0.2). A new rate opens a new epoch everywhere.
    """
    ownable._check_owner()
    if rate != self.rate:
        for u: uint256 in range(1, MAX_UNDERLYINGS + 1):
            self._invalidate(u)
    self._set_params(im_factor, max_array_age, rate)


@external
def set_settlement_key(key: bytes32):
    """
    @notice Sets the oracle key of the settlement asset's USD feed (empty disables it).
    """
    ownable._check_owner()
    self.settlement_key = key
    log SettlementKeySet(key=key)


# ---------------------------------------------------------------- valuation internals


@internal
@view
def _book(
    account: uint256,
    positions: IClearinghouse.Positions,
    cash_adjust: int256,
    preloaded: Context[MAX_UNDERLYINGS + 1],
    loaded: uint256,
) -> Book:
    """
    @dev Reads everything the valuation needs: the vault side, the positions and one
         context per touched underlying (`preloaded` ones are reused, the others read);
         values options from current-epoch arrays, computing stale ones in memory.
         `cash_adjust` is subtracted from cash (to value the account as before a trade).
    """
    ctx: Context[MAX_UNDERLYINGS + 1] = preloaded
    mask: uint256 = 0
    cash: int256 = 0
    lines: DynArray[IVault.Collateral, MAX_ASSETS] = []
    cash, lines = staticcall VAULT.account_state(account)
    cash -= cash_adjust
    collateral_value: uint256 = 0
    mm_haircut: uint256 = 0
    im_haircut: uint256 = 0
    # vault side: every line at its floor value; tracking collateral joins its exposure
    for line: IVault.Collateral in lines:
        value: uint256 = math._mul_div(line.balance, staticcall ORACLE.price(line.price_key), WAD, False)
        collateral_value += value
        mm_haircut += math._mul_div(value, line.mm_haircut, WAD, True)
        im_haircut += math._mul_div(value, line.im_haircut, WAD, True)
        u: uint256 = self.underlying_ids[line.underlying]
        if u != 0:
            if mask & (1 << u) == 0:
                if loaded & (1 << u) == 0:
                    ctx[u] = self._context(u)
                mask |= 1 << u
            ctx[u].exposure += convert(value, int256)
    # perps: linear exposure, unsettled funding, notional for the add-on
    perp_size: int256[MAX_UNDERLYINGS + 1] = empty(int256[MAX_UNDERLYINGS + 1])
    for line: IClearinghouse.PerpLine in positions.perps:
        u: uint256 = line.underlying
        if mask & (1 << u) == 0:
            if loaded & (1 << u) == 0:
                ctx[u] = self._context(u)
            mask |= 1 << u
        spot: uint256 = ctx[u].spot
        cumulative: int256 = fixed._funding_now(
            line.cumulative, line.premium_ema, line.updated_at, spot, positions.funding_cap, positions.funding_interval, block.timestamp
        )
        notional: int256 = fixed._floor_div(line.size * convert(spot, int256), IWAD)
        owed: int256 = fixed._floor_div(-line.size * (cumulative - line.funding), IWAD)
        cash += notional - line.cost + owed
        ctx[u].exposure += notional
        ctx[u].perp_units += convert(abs(line.size), uint256)
        perp_size[u] = line.size
    # options: one array per position, multiplied by the size
    for word: uint256 in positions.options:
        u: uint256 = (word >> 32) & 255
        if mask & (1 << u) == 0:
            if loaded & (1 << u) == 0:
                ctx[u] = self._context(u)
            mask |= 1 << u
        size: int256 = fixed._word_size(word)
        instrument_id: uint256 = word & (2**32 - 1)
        # only the words the array uses: lanes 0 (epoch) .. scenarios, six per word
        words: uint256[ARRAY_WORDS] = empty(uint256[ARRAY_WORDS])
        for i: uint256 in range((ctx[u].scenarios + LANES) // LANES, bound=ARRAY_WORDS):
            words[i] = self.arrays[instrument_id][i]
        if words[0] & LANE_MASK != ctx[u].epoch or not ctx[u].stored:
            words = self._compute_array(staticcall CLEARING.instrument(instrument_id), ctx[u])
        base: int256 = convert(self._lane(words, 1), int256)
        for s: uint256 in range(1, ctx[u].scenarios, bound=MAX_SCENARIOS):
            ctx[u].option_pnl[s] += size * (convert(self._lane(words, s + 1), int256) - base)
        if size < 0:
            base += 1
        ctx[u].option_value += size * base
        ctx[u].option_units += convert(abs(size), uint256)
        if (word >> 40) & 255 == CALL:
            ctx[u].net_calls += size
        else:
            ctx[u].net_puts += size
    return Book(
        cash=cash,
        lines=lines,
        mask=mask,
        options=positions.options,
        perp_size=perp_size,
        ctx=ctx,
        collateral_value=collateral_value,
        mm_haircut=mm_haircut,
        im_haircut=im_haircut,
    )


@internal
@view
def _view_book(account: uint256, cash_adjust: int256) -> Book:
    """
    @dev `_book` for views: stale arrays are computed in memory, nothing is stored.
    """
    return self._book(
        account, staticcall CLEARING.positions(account), cash_adjust, empty(Context[MAX_UNDERLYINGS + 1]), 0
    )


@internal
def _refresh_margin(account: uint256) -> IRiskEngine.Margin:
    """
    @dev Stores the account's stale arrays, then values it from storage.
    """
    positions: IClearinghouse.Positions = staticcall CLEARING.positions(account)
    contexts: Context[MAX_UNDERLYINGS + 1] = empty(Context[MAX_UNDERLYINGS + 1])
    loaded: uint256 = 0
    contexts, loaded = self._store_stale(positions.options)
    return self._margin(self._book(account, positions, 0, contexts, loaded))


@internal
@view
def _context(u: uint256) -> Context:
    """
    @dev Oracle reads, epoch and grid of underlying `u`. The stored epoch is current iff
         both oracle rounds match it and it is younger than `max_array_age`; otherwise the
         context carries the epoch that would open now (`stored` false).
    """
    ctx: Context = empty(Context)
    ctx.spot, ctx.spot_round = staticcall ORACLE.price_round(self.underlyings[u].spot_key)
    ctx.vol, ctx.vol_round = staticcall ORACLE.price_round(self.underlyings[u].vol_key)
    ctx.scenarios = self.underlyings[u].scenarios
    ctx.quantum = self.underlyings[u].quantum
    # only the words the grid uses (4 scenarios each)
    for i: uint256 in range((ctx.scenarios + GRID_LANES - 1) // GRID_LANES, bound=GRID_WORDS):
        ctx.grid[i] = self.grid_words[u][i]
    record: uint256 = self.epochs[u]
    ctx.epoch = (record >> 64) & (2**32 - 1)
    ctx.opened_at = record & (2**64 - 1)
    if (
        convert(record >> 176, uint80) == ctx.spot_round
        and convert((record >> 96) & (2**80 - 1), uint80) == ctx.vol_round
        and block.timestamp - ctx.opened_at <= self.max_array_age
    ):
        ctx.stored = True
    else:
        ctx.epoch += 1
        ctx.opened_at = block.timestamp
    return ctx


@internal
@view
def _margin(book: Book) -> IRiskEngine.Margin:
    """
    @dev Equity and requirements from a loaded book (see the formulas at the top).
    """
    equity: int256 = book.cash + convert(book.collateral_value, int256)
    risk: uint256 = 0
    for u: uint256 in range(1, MAX_UNDERLYINGS + 1):
        if book.mask & (1 << u) == 0:
            continue
        ctx: Context = book.ctx[u]
        equity += fixed._floor_div(ctx.option_value * convert(ctx.quantum, int256), IWAD)
        pnl: int256[MAX_SCENARIOS] = self._scenario_pnl(ctx)
        worst: int256 = 0
        for s: uint256 in range(ctx.scenarios, bound=MAX_SCENARIOS):
            worst = min(worst, self._weighted(pnl[s], ctx.grid, s))
        risk += convert(-worst, uint256)
        risk += self._addons(u, ctx)
    return IRiskEngine.Margin(
        equity=equity,
        initial=math._mul_div(risk, self.im_factor, WAD, True) + book.im_haircut,
        maintenance=risk + book.mm_haircut,
    )


@internal
@view
def _addons(u: uint256, ctx: Context) -> uint256:
    """
    @dev Perp add-on (rate × notional), short-option add-on (rate × spot per net short
         call and put unit) and the quantization add-on (one lane unit per option unit:
         a lane is at most one quantum below the value it stands for).
    """
    addon: uint256 = 0
    if ctx.perp_units != 0:
        addon += math._mul_div(ctx.perp_units * ctx.spot, self.underlyings[u].perp_rate, WAD * WAD, True)
    if ctx.option_units != 0:
        short_units: uint256 = convert(max(-ctx.net_calls, 0) + max(-ctx.net_puts, 0), uint256)
        if short_units != 0:
            addon += math._mul_div(short_units * ctx.spot, self.underlyings[u].short_option_rate, WAD * WAD, True)
        addon += math._mul_div(ctx.option_units, ctx.quantum, WAD, True)
    return addon


@internal
@pure
def _scenario_pnl(ctx: Context) -> int256[MAX_SCENARIOS]:
    """
    @dev Unweighted PnL of the account's exposure to one underlying under each scenario.
    """
    pnl: int256[MAX_SCENARIOS] = empty(int256[MAX_SCENARIOS])
    quantum: int256 = convert(ctx.quantum, int256)
    for s: uint256 in range(1, ctx.scenarios, bound=MAX_SCENARIOS):
        pnl[s] = fixed._floor_div(ctx.exposure * self._shock(ctx.grid, s), IMILLION) + fixed._floor_div(
            ctx.option_pnl[s] * quantum, IWAD
        )
    return pnl


@internal
@pure
def _weighted(pnl: int256, grid: uint256[GRID_WORDS], s: uint256) -> int256:
    return fixed._floor_div(pnl * convert(self._weight(grid, s), int256), IMILLION)


# ---------------------------------------------------------------- risk arrays


@internal
@view
def _compute_array(instrument: IClearinghouse.Instrument, ctx: Context) -> uint256[ARRAY_WORDS]:
    """
    @dev The option's value per unit under every scenario, at the epoch's spot, vol and
         opening time, in lanes of `quantum` (rounded down); lane 0 holds the epoch.
    """
    u: uint256 = instrument.underlying
    tau: uint256 = self._tau(instrument.expiry, ctx.opened_at)
    # term scaling of the vol shocks: p = (30d / max(T, 1d))^exponent
    p: uint256 = bs_math._pow(TERM_BASE * WAD // max(tau, TERM_FLOOR), self.underlyings[u].term_exponent)
    vol_up: uint256 = ctx.vol * (WAD + self.underlyings[u].vol_up * p // WAD) // WAD
    down: uint256 = max(self.underlyings[u].vol_floor, WAD - min(self.underlyings[u].vol_down * p // WAD, WAD))
    vol_down: uint256 = ctx.vol * down // WAD
    is_call: bool = instrument.kind == CALL
    rate: uint256 = self.rate
    words: uint256[ARRAY_WORDS] = empty(uint256[ARRAY_WORDS])
    words[0] = ctx.epoch & LANE_MASK
    for s: uint256 in range(ctx.scenarios, bound=MAX_SCENARIOS):
        shock: int256 = self._shock(ctx.grid, s)
        spot: uint256 = convert(convert(ctx.spot, int256) * (IMILLION + shock) // IMILLION, uint256)
        move: uint256 = self._move(ctx.grid, s)
        vol: uint256 = ctx.vol
        if move == VOL_UP:
            vol = vol_up
        elif move == VOL_DOWN:
            vol = vol_down
        lane: uint256 = bs_math._bs_price(spot, instrument.strike, vol, tau, rate, is_call) // ctx.quantum
        assert lane <= LANE_MASK, "engine: value out of range"
        k: uint256 = s + 1
        words[k // LANES] |= lane << (k % LANES * LANE_BITS)
    return words


@internal
def _store_array(instrument_id: uint256, words: uint256[ARRAY_WORDS], epoch: uint256):
    self.arrays[instrument_id] = words
    log RiskArrayStored(instrument=instrument_id, epoch=epoch)


@internal
def _open_epoch(u: uint256, ctx: Context):
    self.epochs[u] = (
        (convert(ctx.spot_round, uint256) << 176)
        | (convert(ctx.vol_round, uint256) << 96)
        | ((ctx.epoch & (2**32 - 1)) << 64)
        | ctx.opened_at
    )
    log EpochOpened(underlying=u, epoch=ctx.epoch, spot_round=ctx.spot_round, vol_round=ctx.vol_round)


@internal
def _invalidate(u: uint256):
    """
    @dev Forces a new epoch at the next read (rounds 0 never match a live round).
    """
    self.epochs[u] = self.epochs[u] & ((2**32 - 1) << 64)


@internal
def _store_stale(options: DynArray[uint256, MAX_OPTIONS]) -> (Context[MAX_UNDERLYINGS + 1], uint256):
    """
    @dev Stores the current-epoch array of every option in `options`, opening epochs as
         needed, so the valuation that follows reads only storage.
    @return The contexts it loaded (epochs stored) and their mask, for `_book` to reuse.
    """
    contexts: Context[MAX_UNDERLYINGS + 1] = empty(Context[MAX_UNDERLYINGS + 1])
    loaded: uint256 = 0
    for word: uint256 in options:
        u: uint256 = (word >> 32) & 255
        if loaded & (1 << u) == 0:
            contexts[u] = self._current_context(u)
            loaded |= 1 << u
        instrument_id: uint256 = word & (2**32 - 1)
        if self.arrays[instrument_id][0] & LANE_MASK != contexts[u].epoch:
            self._store_array(instrument_id, self._compute_array(staticcall CLEARING.instrument(instrument_id), contexts[u]), contexts[u].epoch)
    return contexts, loaded


@internal
def _current_context(u: uint256) -> Context:
    """
    @dev The context of `u` with its current epoch in storage (opened now if stale).
    """
    ctx: Context = self._context(u)
    if not ctx.stored:
        self._open_epoch(u, ctx)
        ctx.stored = True
    return ctx


# ---------------------------------------------------------------- small helpers


@internal
@view
def _check_new_risk():
    # both calls revert with the oracle's reason when the check fails
    ok: bool = staticcall ORACLE.check_sequencer()
    key: bytes32 = self.settlement_key
    if key != empty(bytes32):
        stable: uint256 = staticcall ORACLE.price(key)


@internal
@view
def _new_risk_open() -> bool:
    """
    @dev `_check_new_risk` without reverting.
    """
    ok: bool = False
    response: Bytes[32] = b""
    ok, response = raw_call(
        ORACLE.address, method_id("check_sequencer()"), max_outsize=32, is_static_call=True, revert_on_failure=False
    )
    if not ok:
        return False
    key: bytes32 = self.settlement_key
    if key == empty(bytes32):
        return True
    ok, response = raw_call(
        ORACLE.address,
        abi_encode(key, method_id=method_id("price(bytes32)")),
        max_outsize=32,
        is_static_call=True,
        revert_on_failure=False,
    )
    return ok


@internal
@pure
def _tau(expiry: uint256, at: uint256) -> uint256:
    if expiry <= at:
        return 0
    return expiry - at


@internal
@pure
def _lane(words: uint256[ARRAY_WORDS], k: uint256) -> uint256:
    return (words[k // LANES] >> (k % LANES * LANE_BITS)) & LANE_MASK


@internal
@pure
def _shock(grid: uint256[GRID_WORDS], s: uint256) -> int256:
    lane: uint256 = grid[s // GRID_LANES] >> (s % GRID_LANES * 64)
    # the low 32 bits hold the shock in two's complement
    return convert(convert(lane << 224, bytes32), int256) >> 224


@internal
@pure
def _move(grid: uint256[GRID_WORDS], s: uint256) -> uint256:
    return (grid[s // GRID_LANES] >> (s % GRID_LANES * 64 + 32)) & 255


@internal
@pure
def _weight(grid: uint256[GRID_WORDS], s: uint256) -> uint256:
    return (grid[s // GRID_LANES] >> (s % GRID_LANES * 64 + 40)) & (2**24 - 1)


# ---------------------------------------------------------------- admin internals


@internal
@view
def _check_underlying(u: uint256):
    assert u != 0 and u <= self.underlying_count, "engine: unknown underlying"


@internal
def _set_grid(
    u: uint256,
    shocks: DynArray[int256, MAX_SCENARIOS],
    vol_moves: DynArray[uint256, MAX_SCENARIOS],
    weights: DynArray[uint256, MAX_SCENARIOS],
):
    n: uint256 = len(shocks)
    assert n >= 2 and len(vol_moves) == n and len(weights) == n, "engine: bad grid"
    assert shocks[0] == 0 and vol_moves[0] == VOL_NONE and weights[0] == MILLION, "engine: bad base scenario"
    words: uint256[GRID_WORDS] = empty(uint256[GRID_WORDS])
    for s: uint256 in range(n, bound=MAX_SCENARIOS):
        assert shocks[s] >= MIN_SPOT_SHOCK and shocks[s] <= MAX_SPOT_SHOCK, "engine: shock out of bounds"
        assert vol_moves[s] <= VOL_UP, "engine: bad vol move"
        assert weights[s] != 0 and weights[s] <= MILLION, "engine: weight out of bounds"
        lane: uint256 = (convert(convert(shocks[s], bytes32), uint256) & (2**32 - 1)) | (vol_moves[s] << 32) | (weights[s] << 40)
        words[s // GRID_LANES] |= lane << (s % GRID_LANES * 64)
    self.grid_words[u] = words
    self.underlyings[u].scenarios = n
    self._invalidate(u)
    log GridSet(underlying=u, shocks=shocks, vol_moves=vol_moves, weights=weights)


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
    assert quantum >= MIN_QUANTUM and quantum <= MAX_QUANTUM, "engine: quantum out of bounds"
    assert vol_up <= MAX_VOL_SHOCK and vol_down <= WAD, "engine: vol shock out of bounds"
    assert vol_floor >= MIN_VOL_FLOOR and vol_floor <= WAD, "engine: vol floor out of bounds"
    assert term_exponent <= MAX_TERM_EXPONENT, "engine: exponent out of bounds"
    assert short_option_rate <= MAX_ADDON_RATE and perp_rate <= MAX_ADDON_RATE, "engine: add-on out of bounds"
    self.underlyings[u].quantum = quantum
    self.underlyings[u].vol_up = vol_up
    self.underlyings[u].vol_down = vol_down
    self.underlyings[u].vol_floor = vol_floor
    self.underlyings[u].term_exponent = term_exponent
    self.underlyings[u].short_option_rate = short_option_rate
    self.underlyings[u].perp_rate = perp_rate
    self._invalidate(u)
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


@internal
def _set_params(im_factor: uint256, max_array_age: uint256, rate: uint256):
    assert im_factor >= MIN_IM_FACTOR and im_factor <= MAX_IM_FACTOR, "engine: im factor out of bounds"
    assert max_array_age >= MIN_ARRAY_AGE and max_array_age <= MAX_ARRAY_AGE, "engine: array age out of bounds"
    assert rate <= MAX_RATE, "engine: rate out of bounds"
    self.im_factor = im_factor
    self.max_array_age = max_array_age
    self.rate = rate
    log ParamsSet(im_factor=im_factor, max_array_age=max_array_age, rate=rate)
