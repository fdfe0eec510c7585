# pragma version ~=0.4.3
# pragma nonreentrancy on
# pragma experimental-codegen
"""
@title crossmargin margin engine
@notice Values accounts with the portfolio margin of SPECIFICATION.md §6: the vault's
        collateral and cash and the clearinghouse's positions, under a scenario grid per
        underlying, with option values read from per-instrument risk arrays.

        Glossary (all amounts WAD = 1e18; 1 cash = 1 USD):
          grid      per underlying, up to 32 scenarios (spot shock, vol move, weight), shocks
                    and weights in steps of 0.01%; scenario 0 is always the base (no shock,
                    weight 1)
          risk array per option, its value per unit under every scenario of its grid,
                    stored as 19-bit lanes of `quantum << shift` wei (floor), `shift` the
                    smallest that makes every lane fit (two words at 23 scenarios);
                    computed once per *epoch* of the underlying, at the epoch's opening time
          epoch     per underlying, a (spot round, vol round) pair seen by the engine; a new
                    epoch opens when either oracle round moves, the last one is older than
                    `max_array_age` or the expiry of an option it valued with time left has
                    come (its horizon). A check only uses arrays of the current epoch.

        Valuation of an account (z = size << shift of the option's array, so z·q is in
        quanta):
          equity = cash + Σ floor(collateral value) + Σ perps (size·spot − cost − funding owed)
                   + Σ futures (size·spot − cost; from expiry see `_value`)
                   + Σ options z·q0·quantum (longs at the floor lane, shorts at lane + 1)
          PnL_u(s) = floor(E_u·shock_s) + floor(Σ z·(q_s − q_0)·quantum)   E_u = linear
                   exposure (perp and unexpired future notional + value of collateral
                   tracking u)
          L_u    = max(0, −min_s floor(w_s·PnL_u(s)))
          C_u    = 0 if depth_u = 0 or L_u <= free_u, else
                   ceil(L_u·min(L_u − free_u, CONCENTRATION_CAP·depth_u) / depth_u)
                   (concentration add-on; free_u, depth_u from the listing's risk word)
          risk   = Σ_u (L_u + C_u) + perp add-on + short-option add-on + quantization add-on
          MM     = risk + Σ collateral value·mm_haircut
          IM     = ceil(risk·im_factor) + Σ collateral value·im_haircut
        Values round down and requirements up, so rounding favours the protocol.
@custom:security All state-changing entry points hold the lock (`pragma nonreentrancy on`).
        The engine only reads: the vault (`account_state`), the clearinghouse (`positions`),
        the markets contract (`instrument`, and `settlement_price` for an expired future)
        and the oracle router; it writes nothing but epochs and arrays, and the
        configuration the risk model (alone) sets through `configure_*`. Risk
        arrays are priced by the risk model (`RiskModel.vy`, pure), called only for a
        stale array: a check whose arrays are all current makes no call to it. A
        margin check never values an option from an array of an older epoch: views compute
        a stale array in memory, state-changing checks store it (after a first valuation
        pass that skips it) and value the account again. Compiled with the venom code
        generator (`experimental-codegen`): 17.9 KB, against 21.3 KB from the legacy
        generator (27.0 KB, over the EIP-170 limit, while the pricing was in the engine).
"""

from snekmate.auth import ownable
from snekmate.auth import ownable_2step
from snekmate.utils import math

from interfaces import IClearinghouse
from interfaces import IMarkets
from interfaces import IRiskEngine
from interfaces import IRiskModel
from interfaces import IVault
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

implements: IRiskEngine


interface IOracleRouter:
    def price(key: bytes32) -> uint256: view
    def price_rounds(key_a: bytes32, key_b: bytes32, liquidation: bool) -> (uint256, uint80, uint256, uint80): view
    def check_new_risk(stable_key: bytes32) -> bool: view


WAD: constant(uint256) = 10**18
IWAD: constant(int256) = 10**18
MAX_ASSETS: constant(uint256) = 16
# @dev Underlying ids are 1..MAX_UNDERLYINGS (one bit each in masks; 0 means "none").
MAX_UNDERLYINGS: constant(uint256) = 16
# @dev Hard bound on option positions per account (the margin loop's bound).
MAX_OPTIONS: constant(uint256) = 128
# @dev Words of one byte per option position (the chains of `_value`).
LINK_WORDS: constant(uint256) = MAX_OPTIONS // 32
# @dev Batch bounds for keeper views and refreshes.
MAX_BATCH: constant(uint256) = 64

# @dev Grid shocks and weights are in millionths (1e6 = 100%) at the interface.
MILLION: constant(uint256) = 10**6
IMILLION: constant(int256) = 10**6
# @dev Grid and risk-array layout (grid words, lanes, UNSETTLED, MAX_SHIFT): `lib/risk_layout.vy`.
# @dev The default grid of SPECIFICATION.md §6 (the one `list_underlying` sets), packed: it
#      is read from here, and only a custom grid from storage (3 cold slots saved per
#      underlying and valuation). `crossmargin.model.margin.pack_grid(default_grid())`.
#      Order: base; ±15% × vol up/none/down; the tails −66% (weight 0.21) and +200%
#      (weight 0.0693), vol up; 0% vol up, down;
#      then ±10%, ±5% × up/none/down. The first 11 fill a risk array's first word: the
#      scenarios that usually bind, so a hinted check (`refresh_bound`) reads one word.
DEFAULT_GRID: constant(uint256[risk_layout.GRID_WORDS]) = [
    14846637966139815319961804424294564718560302627871613363935901436424604418048,
    70677402821747872943581686096478072097284944682020734653762841524704862686752,
    16455051854145131903760194006137042247593585207280598951419189460492,
    0,
]
DEFAULT_SCENARIOS: constant(uint256) = 23
# @dev The grid fields of a listing's risk word: scenarios (bits 192-199) and the custom
#      grid flag (bit 200; clear for the default grid).
GRID_FIELDS: constant(uint256) = 511 << 192
CUSTOM_GRID: constant(uint256) = 1 << 200
# @dev Oracle keys of an underlying are at most 16 bytes (both share one word).
LOW128: constant(uint256) = 2**128 - 1
M32: constant(uint256) = 2**32 - 1
M24: constant(uint256) = 2**24 - 1
M40: constant(uint256) = 2**40 - 1
# @dev Option sums of one underlying (see `_sum_options`): one per lane of every array
#      word, then the shorts' Σ z, Σ |z|, net calls and net puts.
SHORTS: constant(uint256) = risk_layout.FIRST_LANES + 2 * risk_layout.LANES
UNITS: constant(uint256) = SHORTS + 1
CALLS: constant(uint256) = SHORTS + 2
PUTS: constant(uint256) = SHORTS + 3
ACC_SIZE: constant(uint256) = SHORTS + 4
# @dev `_sum_options`'s `reads` is the mask an array's word 0 is compared with its epoch
#      through (see `_reads`): M32, the flags of the words past the first it reads (bits
#      249 and 250, always 0 in an array: lane 10 ends at bit 248) and, in a liquidation's
#      valuation (bit 0 of a `refresh_bound` hint), LIQUIDATION, the UNSETTLED flag's bit:
#      an unsettled array is then never current (`_compute_array` values it as the
#      liquidation does). One mask on the stack, so the check costs what `w0 & M32` did.
READ_WORD1: constant(uint256) = 1 << 249
READ_WORD2: constant(uint256) = 1 << 250
LIQUIDATION: constant(uint256) = risk_layout.UNSETTLED
# @dev `_value` modes: views (stale arrays computed in memory); also the PnL vector of one
#      underlying (`risk`); state-changing checks (stale arrays skipped and reported, to be
#      stored before the account is valued again); PLAIN with the positions `margin_with`
#      was given instead of the clearinghouse's.
PLAIN: constant(uint256) = 0
DETAIL: constant(uint256) = 1
COLLECT: constant(uint256) = 2
GIVEN: constant(uint256) = 3
# @dev `margin_with`'s calldata: the offset of its positions argument (after `account`),
#      and where their ABI encoding's options length sits (after the five head words), in
#      the canonical encoding it checks.
GIVEN_OFFSET: constant(uint256) = 36
GIVEN_LENGTHS: constant(uint256) = 260

# @dev Instrument kinds.
PERP: constant(uint256) = 1
CALL: constant(uint256) = 2
PUT: constant(uint256) = 3

YEAR: constant(uint256) = 365 * 86_400

# @dev The parameters the engine starts with (SPECIFICATION.md): IM factor 1.3, arrays at
#      most 1 hour old, rate 0, packed as `params`. Bounds and validation of every parameter
#      are the risk model's (`RiskModel.vy`), which sets them through `configure_*`.
DEFAULT_IM_FACTOR: constant(uint256) = 13 * 10**17
DEFAULT_ARRAY_AGE: constant(uint256) = 3_600
MIN_FUNDING_INTERVAL: constant(uint256) = 3_600
MAX_FUNDING_INTERVAL: constant(uint256) = 86_400
MAX_FUNDING_CAP: constant(uint256) = 5 * 10**16
MIN_EMA_WINDOW: constant(uint256) = 60
MAX_EMA_WINDOW: constant(uint256) = 86_400
# @dev Longest option listed (s); keeps every BS input inside bs_math's overflow bounds.
MAX_EXPIRY: constant(uint256) = 5 * YEAR
M64: constant(uint256) = 2**64 - 1
# @dev Concentration add-on (SPECIFICATION.md §6): free_u and depth_u are uint24 fields of
#      the listing's risk word in thousands of USD (this many WAD each); the add-on is at
#      most CONCENTRATION_CAP·L_u.
THOUSAND_USD: constant(uint256) = 10**21
CONCENTRATION_CAP: constant(uint256) = 4


struct Underlying:
    # e.g. "ETH"; collateral whose vault `underlying` equals it is shocked with its spot
    name: bytes32
    # oracle keys of the spot price and implied volatility (both WAD)
    spot_key: bytes32
    vol_key: bytes32
    # always 0: perps are listed in the clearinghouse (kept for the getter's ABI)
    perp: uint256
    # wei of value per risk-array lane unit before the array's scale (see `_compute_array`)
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
    # concentration add-on: the loss L_u it leaves free and the depth it scales with
    # (thousands of USD; depth 0 = no add-on)
    concentration_free: uint256
    concentration_depth: uint256


struct Listing:
    name: bytes32
    # the spot and vol oracle keys, at most 16 bytes each: spot key in the high 128 bits,
    # vol key in the low (see `_spot_key`, `_vol_key`)
    keys: uint256
    # what every valuation reads, one word: quantum (bits 0-63) | perp_rate (64-127) |
    # short_option_rate (128-191) | scenarios (192-199) | custom grid (200) |
    # concentration free (208-231) | concentration depth (232-255, thousands of USD each)
    risk: uint256
    # what only array computations read: vol_up | vol_down | vol_floor | term_exponent,
    # 64 bits each from bit 0
    shocks: uint256


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
    # the listing's risk word, unpacked where it is used often
    risk: uint256
    scenarios: uint256
    quantum: uint256


struct UnderlyingRisk:
    underlying: uint256
    # scenario with the worst weighted PnL, that loss (WAD) and the unweighted PnL vector
    worst_scenario: uint256
    loss: uint256
    pnl: DynArray[int256, risk_layout.MAX_SCENARIOS]


struct Valuation:
    margin: IRiskEngine.Margin
    # bit u set iff the account touches underlying u
    touched: uint256
    # bit i set iff position i (of the clearinghouse's option words) has a stale array
    stale: uint256
    # the focus underlying's worst weighted scenario, its loss L_u (WAD) and, with DETAIL,
    # the unweighted PnL of every scenario
    worst_scenario: uint256
    loss: uint256
    pnl: DynArray[int256, risk_layout.MAX_SCENARIOS]


# @dev The vault holding collateral and cash.
VAULT: public(immutable(IVault))
# @dev The oracle router every price is read through.
ORACLE: public(immutable(IOracleRouter))

# @dev The clearinghouse holding positions, and the markets contract holding instruments.
CLEARING: public(immutable(IClearinghouse))
MARKETS: public(immutable(IMarkets))
# @dev Oracle key of the settlement asset's USD feed (depeg circuit breaker), or empty.
settlement_key: public(bytes32)
# @dev The risk model pricing stale risk arrays (set by the owner once both are deployed;
#      read only where an array is stale, never by a check whose arrays are current); the
#      only caller of the `configure_*` setters, which it validates for its owner.
risk_model: public(IRiskModel)
# @dev Engine parameters, one word: im_factor (bits 0-63, WAD, IM = ceil(risk · im_factor)
#      + IM haircuts) | max_array_age (64-127, s: an older risk array is never used) |
#      rate (128-191, Black-Scholes rate, WAD per year). Getters below.
params: uint256
# @dev Underlyings by id (1..underlying_count) and ids by name; `underlyings(u)` unpacks.
listings: HashMap[uint256, Listing]
underlying_ids: public(HashMap[bytes32, uint256])
underlying_count: public(uint256)
# @dev Packed custom grid of an underlying (see GRID_LANES), unused for the default grid.
grid_words: HashMap[uint256, uint256[risk_layout.GRID_WORDS]]
# @dev Epoch record per underlying: spot round (80) | vol round (80) | epoch (32) | horizon
#      (24) | opened (40). The epoch is over `horizon` seconds after it opened: the earliest
#      expiry of an option it stored an array of with time left (2**24 - 1 for none), so no
#      array with time value outlives its option's expiry.
epochs: HashMap[uint256, uint256]
# @dev Risk arrays by instrument (see LANES); only the words in use are read.
arrays: HashMap[uint256, uint256[risk_layout.ARRAY_WORDS]]


event EpochOpened:
    underlying: indexed(uint256)
    epoch: uint256
    spot_round: uint80
    vol_round: uint80


event RiskArraysStored:
    underlying: indexed(uint256)
    epoch: uint256
    # the options whose arrays were stored, in the order priced
    instruments: DynArray[uint256, MAX_BATCH]


event OiCapSet:
    instrument: indexed(uint256)
    oi_cap: uint256


# @dev Logged once, by the constructor (the defaults); the risk model logs every later change.
event ParamsSet:
    im_factor: uint256
    max_array_age: uint256
    rate: uint256


event SettlementKeySet:
    key: bytes32


event RiskModelSet:
    risk_model: indexed(address)


@deploy
def __init__(vault: IVault, oracle: IOracleRouter, clearing: IClearinghouse, markets: IMarkets, settlement_key: bytes32):
    """
    @param settlement_key Oracle key of the settlement asset's USD feed, or empty.
    @dev Defaults from SPECIFICATION.md: IM factor 1.3, arrays at most 1 hour old, rate 0.
    """
    ownable.__init__()
    ownable_2step.__init__()
    VAULT = vault
    ORACLE = oracle
    CLEARING = clearing
    MARKETS = markets
    self.settlement_key = settlement_key
    self.params = DEFAULT_IM_FACTOR | (DEFAULT_ARRAY_AGE << 64)
    log ParamsSet(im_factor=DEFAULT_IM_FACTOR, max_array_age=DEFAULT_ARRAY_AGE, rate=0)
    log SettlementKeySet(key=settlement_key)


# ---------------------------------------------------------------- risk arrays and checks


@external
def refresh(instrument_ids: DynArray[uint256, MAX_BATCH]) -> uint256:
    """
    @notice Keeper entry: stores the current-epoch risk array of every listed option in
            `instrument_ids` whose array is stale. Perps and unknown ids are skipped. The
            stale options of one underlying that follow each other are priced in one
            risk-model call, which shares what they have in common: sorted by underlying,
            expiry and strike, with a strike's call and put adjacent, they cost the least.
    @return How many arrays were computed and stored.
    """
    contexts: Context[MAX_UNDERLYINGS + 1] = empty(Context[MAX_UNDERLYINGS + 1])
    loaded: uint256 = 0
    stored: uint256 = 0
    # the stale options of underlying `u` since the last one of another underlying
    u: uint256 = 0
    ids: DynArray[uint256, MAX_BATCH] = []
    for instrument_id: uint256 in instrument_ids:
        instrument: IClearinghouse.Instrument = self._instrument(instrument_id)
        if instrument.kind != CALL and instrument.kind != PUT:
            continue
        v: uint256 = instrument.underlying
        if loaded & (1 << v) == 0:
            contexts[v] = self._current_context(v, 0)
            loaded |= 1 << v
        w0: uint256 = self.arrays[instrument_id][0]
        # an UNSETTLED array is computed again once the settlement price is known
        if w0 & M32 != contexts[v].epoch or (w0 >= risk_layout.UNSETTLED and instrument.settlement_price != 0):
            if v != u:
                self._store_arrays(u, contexts[u], ids)
                stored += len(ids)
                u = v
                ids = []
            ids.append(instrument_id)
    self._store_arrays(u, contexts[u], ids)
    return stored + len(ids)


@external
def check_initial(account: uint256) -> int256:
    """
    @notice `equity - IM` (WAD) for the vault's withdrawal check; stores any stale risk
            array of the account first. Reverts while new risk is closed.
    """
    self._check_new_risk()
    m: IRiskEngine.Margin = self._refresh_margin(account, 0)
    return m.equity - convert(m.initial, int256)


@external
def refresh_margin(account: uint256) -> IRiskEngine.Margin:
    """
    @notice Stores the account's stale risk arrays (opening epochs as needed), then returns
            its margin. The clearinghouse calls it after every trade.
    """
    return self._refresh_margin(account, 0)


@external
def refresh_bound(account: uint256, hint: uint256) -> IRiskEngine.Margin:
    """
    @notice `refresh_margin` with the loss of each hinted underlying taken at one scenario:
            byte u of `hint` (bits 8u .. 8u + 7) names a scenario of underlying u, 0 all
            of them. A single scenario's loss is at most L_u, so the requirements returned
            are lower bounds (equity is exact): proof that an account is below them, as a
            liquidation start needs, never that it is above. Bit 0 of `hint` set: every
            feed the valuation needs is read as the router's `price_rounds` does for
            liquidation (a stale round used as is, an answer out of bounds clamped into
            them) instead of reverting; the liquidator sets it, so a broken feed never
            blocks an auction (SPECIFICATION.md, oracle router). It also values an option
            or future expired without a stored settlement price as a live one with no
            time left (a future at the index with its exposure and add-on, an option at
            its intrinsic value at every scenario's spot), not at the worst case that
            withdrawals and trades see (SPECIFICATION.md, dated futures).
    @dev The keeper names each underlying's worst scenario (`risk`, or the SDK's model);
         the check then reads only the array words that scenario needs (one per option
         for the default grid's first eleven) and evaluates that scenario alone.
    """
    assert hint & 254 == 0 and hint >> (8 * MAX_UNDERLYINGS + 8) == 0, "engine: bad hint"
    return self._refresh_margin(account, hint)


# ---------------------------------------------------------------- views


@external
@view
def margin(account: uint256) -> IRiskEngine.Margin:
    """
    @notice Equity, initial and maintenance requirement of `account` (all WAD).
    """
    return self._view_margin(account, 0)


@external
@view
def margin_adjusted(account: uint256, cash_adjust: int256) -> IRiskEngine.Margin:
    """
    @notice The margin with `cash_adjust` (WAD) subtracted from the account's cash: the
            clearinghouse values an account as it was before a trade with it.
    """
    return self._view_margin(account, cash_adjust)


@external
@view
def margin_with(account: uint256, positions: IClearinghouse.Positions, cash_delta: int256) -> IRiskEngine.Margin:
    """
    @notice The margin `account` would have holding `positions` instead of what the
            clearinghouse holds for it, with `cash_delta` (WAD, signed) added to its vault
            cash: its collateral, cash and every market input as `margin` reads them now
            (stale risk arrays, including those of options it does not hold yet, computed
            in memory as `margin` does). The Lens's `preview` builds `positions` from the
            account's own and a list of trades.
    @param account Account id (owner << 96 | subaccount).
    @param positions Positions as `Clearinghouse.positions` returns them (option words two
           to a word, perp lines with their perp's funding state, future words).
    @param cash_delta Added to the account's vault cash (WAD USD, signed).
    @return Equity, initial and maintenance requirement (WAD).
    @dev Only the canonical ABI encoding (the one Vyper, Solidity and eth_abi produce) is
         accepted ("engine: positions not canonical"): the valuation reads `positions`
         from calldata word by word at the offsets it implies (see `_value`).
    """
    options: uint256 = len(positions.options)
    perps: uint256 = len(positions.perps)
    assert (
        self._word_at(GIVEN_OFFSET) == 96
        and self._word_at(GIVEN_OFFSET + 64) == 160
        and self._word_at(GIVEN_OFFSET + 96) == 192 + 32 * options
        and self._word_at(GIVEN_OFFSET + 128) == 224 + 32 * options + 128 * perps
    ), "engine: positions not canonical"
    return self._value(account, -cash_delta, GIVEN, 0, 0).margin


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
    return self._spot_key(self.listings[underlying].keys)


@external
@view
def margins(accounts: DynArray[uint256, MAX_BATCH]) -> DynArray[IRiskEngine.Margin, MAX_BATCH]:
    """
    @notice `margin` of many accounts in one call, for keepers.
    """
    result: DynArray[IRiskEngine.Margin, MAX_BATCH] = []
    for account: uint256 in accounts:
        result.append(self._view_margin(account, 0))
    return result


@external
@view
def initial_health(account: uint256) -> int256:
    """
    @notice `equity - IM` (WAD); new risk needs it >= 0. Reverts while new risk is closed.
    """
    self._check_new_risk()
    m: IRiskEngine.Margin = self._view_margin(account, 0)
    return m.equity - convert(m.initial, int256)


@external
@view
def maintenance_health(account: uint256) -> int256:
    """
    @notice `equity - MM` (WAD); the account is liquidatable when it is negative. Never
            gated on the sequencer, so liquidation can always proceed.
    """
    m: IRiskEngine.Margin = self._view_margin(account, 0)
    return m.equity - convert(m.maintenance, int256)


@external
@view
def risk(account: uint256) -> DynArray[UnderlyingRisk, MAX_UNDERLYINGS]:
    """
    @notice Per underlying the account touches: the unweighted PnL of every scenario, the
            worst weighted scenario and its loss L_u (WAD).
    @dev One valuation per underlying, each summing only that underlying's options (DETAIL
         values no other underlying's), after one that sums none (focus 0) and only finds
         the underlyings touched: every stale array is priced once in all, so a 128-option
         book with every array stale fits an `eth_call` as `margin` does.
    """
    result: DynArray[UnderlyingRisk, MAX_UNDERLYINGS] = []
    touched: uint256 = self._value(account, 0, DETAIL, 0, 0).touched
    for u: uint256 in range(1, MAX_UNDERLYINGS + 1):
        if touched & (1 << u) != 0:
            v: Valuation = self._value(account, 0, DETAIL, u, 0)
            result.append(UnderlyingRisk(underlying=u, worst_scenario=v.worst_scenario, loss=v.loss, pnl=v.pnl))
    return result


@external
@view
def risk_array(instrument_id: uint256) -> (uint256, uint256, DynArray[uint256, risk_layout.MAX_SCENARIOS], bool):
    """
    @notice The stored risk array of an option: its epoch, its `shift`, its lanes (value
            per unit under each scenario, in units of the underlying's `quantum << shift`,
            rounded down) and whether it values an expired option with no settlement price
            yet (longs at nothing, shorts at the lanes: their worst intrinsic value).
    """
    instrument: IClearinghouse.Instrument = self._instrument(instrument_id)
    words: uint256[risk_layout.ARRAY_WORDS] = self.arrays[instrument_id]
    lanes: DynArray[uint256, risk_layout.MAX_SCENARIOS] = []
    for s: uint256 in range((self.listings[instrument.underlying].risk >> 192) & 255, bound=risk_layout.MAX_SCENARIOS):
        i: uint256 = 0
        bit: uint256 = 0
        i, bit = risk_layout._lane_at(s)
        lanes.append((words[i] >> bit) & risk_layout.LANE_MASK)
    return words[0] & M32, (words[0] >> 32) & 255, lanes, words[0] >= risk_layout.UNSETTLED


@external
@view
def epoch(underlying: uint256) -> (uint80, uint80, uint256, uint256, uint256):
    """
    @notice The stored epoch record: spot round, vol round, epoch number, opening time and
            horizon (s after opening at which it ends: the earliest expiry it stored an
            array for, 2**24 - 1 for none).
    """
    record: uint256 = self.epochs[underlying]
    return (
        convert(record >> 176, uint80),
        convert((record >> 96) & (2**80 - 1), uint80),
        (record >> 64) & (2**32 - 1),
        record & M40,
        (record >> 40) & M24,
    )


@external
@view
def grid(underlying: uint256) -> (DynArray[int256, risk_layout.MAX_SCENARIOS], DynArray[uint256, risk_layout.MAX_SCENARIOS], DynArray[uint256, risk_layout.MAX_SCENARIOS]):
    """
    @notice The scenario grid: spot shocks and weights in millionths, vol moves (0 down,
            1 unchanged, 2 up).
    """
    risk: uint256 = self.listings[underlying].risk
    return self._decode_grid(self._grid(underlying, risk), (risk >> 192) & 255)


@external
@view
def underlyings(underlying: uint256) -> Underlying:
    """
    @notice An underlying's listing and risk parameters (unpacked from storage).
    """
    listing: Listing = self.listings[underlying]
    return Underlying(
        name=listing.name,
        spot_key=self._spot_key(listing.keys),
        vol_key=self._vol_key(listing.keys),
        perp=0,
        quantum=listing.risk & M64,
        vol_up=listing.shocks & M64,
        vol_down=(listing.shocks >> 64) & M64,
        vol_floor=(listing.shocks >> 128) & M64,
        term_exponent=listing.shocks >> 192,
        short_option_rate=(listing.risk >> 128) & M64,
        perp_rate=(listing.risk >> 64) & M64,
        scenarios=(listing.risk >> 192) & 255,
        concentration_free=(listing.risk >> 208) & M24,
        concentration_depth=listing.risk >> 232,
    )


@external
@view
def im_factor() -> uint256:
    """
    @notice IM = ceil(risk · im_factor) + IM haircuts (WAD, >= 1).
    """
    return self._param(0)


@external
@view
def max_array_age() -> uint256:
    """
    @notice A risk array older than this (s) is never used.
    """
    return self._param(1)


@external
@view
def rate() -> uint256:
    """
    @notice Black-Scholes rate (WAD per year).
    """
    return self._param(2)


# ---------------------------------------------------------------- owner


@external
def configure_underlying(name: bytes32, keys: uint256) -> uint256:
    """
    @notice Risk model only (`risk_model`, after validating): lists an underlying under the
            next id with the default grid (`DEFAULT_GRID`, from code); its risk parameters
            follow in `configure_risk`.
    @param name The underlying's name (e.g. "ETH"), not listed yet.
    @param keys The spot oracle key in the high 128 bits, the vol key in the low 128.
    @return The underlying id (1..MAX_UNDERLYINGS).
    """
    self._check_risk_model()
    u: uint256 = self.underlying_count + 1
    self.underlying_count = u
    self.underlying_ids[name] = u
    self.listings[u].name = name
    self.listings[u].keys = keys
    self.listings[u].risk = DEFAULT_SCENARIOS << 192
    return u


@external
def configure_risk(underlying: uint256, risk: uint256, shocks: uint256):
    """
    @notice Risk model only: sets a listed underlying's risk parameters and opens a new epoch.
    @param risk quantum (wei per lane unit) | perp rate << 64 | short option rate << 128 (WAD),
           each below 2**64 | concentration free << 208 | concentration depth << 232
           (thousands of USD, below 2**24); the grid fields of the stored word are kept.
    @param shocks vol_up | vol_down << 64 | vol_floor << 128 | term_exponent << 192 (WAD).
    """
    self._check_risk_model()
    self.listings[underlying].risk = (self.listings[underlying].risk & GRID_FIELDS) | risk
    self.listings[underlying].shocks = shocks
    self._invalidate(underlying)


@external
def configure_grid(underlying: uint256, scenarios: uint256, words: uint256[risk_layout.GRID_WORDS]):
    """
    @notice Risk model only: sets a listed underlying's grid of `scenarios` (2..32) packed
            scenarios (`words`, see `risk_layout`) and opens a new epoch. The default grid
            is read from code again: only another grid is stored (and flagged custom).
    """
    self._check_risk_model()
    fields: uint256 = scenarios << 192
    # (23 scenarios fill three words: the fourth is 0 in both)
    if scenarios != DEFAULT_SCENARIOS or words[0] != DEFAULT_GRID[0] or words[1] != DEFAULT_GRID[1] or words[2] != DEFAULT_GRID[2]:
        self.grid_words[underlying] = words
        fields |= CUSTOM_GRID
    self.listings[underlying].risk = (self.listings[underlying].risk & ~GRID_FIELDS) | fields
    self._invalidate(underlying)


@external
def configure_params(params: uint256):
    """
    @notice Risk model only: sets the engine parameters, packed as `params` (im_factor |
            max_array_age << 64 | rate << 128). A new rate opens a new epoch everywhere.
    """
    self._check_risk_model()
    if (params ^ self.params) >> 128 != 0:
        for u: uint256 in range(1, MAX_UNDERLYINGS + 1):
            self._invalidate(u)
    self.params = params


@external
def set_settlement_key(key: bytes32):
    """
    @notice Sets the oracle key of the settlement asset's USD feed (empty disables it).
    """
    ownable._check_owner()
    self.settlement_key = key
    log SettlementKeySet(key=key)


@external
def set_risk_model(risk_model: IRiskModel):
    """
    @notice Sets the risk model that prices stale risk arrays and configures the engine
            (listings, grids, risk and engine parameters, through `configure_*`): from
            now on only the new model may, the old one's calls revert. The new model
            reads the configuration from the engine's views (it keeps none of its own).
            Opens a new epoch everywhere, so no array of the previous model is used again.
    """
    ownable._check_owner()
    self._require(risk_model.address.is_contract, "engine: risk model not a contract")
    self.risk_model = risk_model
    for u: uint256 in range(1, MAX_UNDERLYINGS + 1):
        self._invalidate(u)
    log RiskModelSet(risk_model=risk_model.address)


# ---------------------------------------------------------------- valuation internals


@internal
@view
def _value(account: uint256, cash_adjust: int256, mode: uint256, focus: uint256, hint: uint256) -> Valuation:
    """
    @dev The valuation (formulas at the top). Reads the vault side, the positions and one
         context per touched underlying (in that order); values options from current-epoch
         arrays. A stale array is computed in memory (PLAIN, DETAIL) or skipped and
         reported in `stale` (COLLECT: the caller stores it and values again). `cash_adjust`
         is subtracted from cash (to value the account as before a trade). Options are
         summed per underlying, and its worst loss found right after (`_sum_options`,
         `_worst`); `focus` selects the underlying whose risk is returned. With a `hint`
         (see `refresh_bound`) a hinted underlying's loss is taken at its hinted scenario.
    """
    v: Valuation = empty(Valuation)
    ctx: Context[MAX_UNDERLYINGS + 1] = empty(Context[MAX_UNDERLYINGS + 1])
    mask: uint256 = 0
    cash: int256 = 0
    lines: DynArray[IVault.Collateral, MAX_ASSETS] = []
    positions: IClearinghouse.Positions = self._positions(account)
    if mode == GIVEN:
        # the positions `margin_with` was given, read from its calldata (checked canonical)
        # one word at a time straight into `positions`: a buffer or a local of their own
        # here would grow this frame, and with it the memory every margin check pays for.
        # Calldata from GIVEN_LENGTHS: each array's length, then its words (four per perp
        # line). While they are read, `funding_cap` holds the array being read (1 options,
        # 2 perps, 3 futures), `funding_interval` the words left in it, and `futures` the
        # words of a perp line until its fourth
        positions.options = []
        positions.perps = []
        positions.futures = []
        positions.funding_cap = 0
        positions.funding_interval = 0
        for j: uint256 in range(3 + MAX_OPTIONS // 2 + 5 * MAX_UNDERLYINGS):
            positions.futures.append(self._word_at(GIVEN_LENGTHS + 32 * j))
            if positions.funding_interval != 0:
                positions.funding_interval -= 1
                if positions.funding_cap == 1:
                    positions.options.append(positions.futures.pop())
                elif positions.funding_cap == 2 and positions.funding_interval % 4 == 0:
                    positions.perps.append(empty(IClearinghouse.PerpLine))
                    positions.perps[len(positions.perps) - 1].state = positions.futures.pop()
                    positions.perps[len(positions.perps) - 1].funding = convert(convert(positions.futures.pop(), bytes32), int256)
                    positions.perps[len(positions.perps) - 1].line = positions.futures.pop()
                    positions.perps[len(positions.perps) - 1].underlying = positions.futures.pop()
            else:
                # an array's length: the next array starts
                positions.funding_cap += 1
                positions.funding_interval = positions.futures.pop()
                if positions.funding_cap == 2:
                    positions.funding_interval *= 4
            if positions.funding_cap == 3 and positions.funding_interval == 0:
                break
        positions.funding_cap = self._word_at(GIVEN_LENGTHS - 64)
        positions.funding_interval = self._word_at(GIVEN_LENGTHS - 32)
    cash, lines = self._account_state(account)
    cash -= cash_adjust
    # bit u of `optioned` set iff the account holds an option on u: only those underlyings
    # read their vol feed (and the others skip the option sums). One pass also chains each
    # underlying's options, so the sums walk only their own (O(N), not O(U·N)): byte u of
    # `heads` is 1 + the index of u's last option, byte i of `links` 1 + the index of the
    # option before i on its underlying (0 ends the chain)
    optioned: uint256 = 0
    heads: uint256 = 0
    links: uint256[LINK_WORDS] = empty(uint256[LINK_WORDS])
    for i: uint256 in range(2 * len(positions.options), bound=MAX_OPTIONS):
        u: uint256 = (positions.options[i // 2] >> (128 * (i % 2) + 32)) & 255
        # a zero half ends the list (the high half of the last word when the count is odd)
        if u == 0:
            break
        optioned |= 1 << u
        links[i // 32] |= ((heads >> (8 * u)) & 255) << (8 * (i % 32))
        heads = (heads & ~(255 << (8 * u))) | ((i + 1) << (8 * u))
    # collateral value, MM and IM haircuts (in memory: the stack is full here)
    totals: uint256[3] = empty(uint256[3])
    # per underlying: linear exposure E_u and perp units
    exposure: int256[MAX_UNDERLYINGS + 1] = empty(int256[MAX_UNDERLYINGS + 1])
    perp_units: uint256[MAX_UNDERLYINGS + 1] = empty(uint256[MAX_UNDERLYINGS + 1])
    # vault side: every line at its floor value; tracking collateral joins its exposure
    for line: IVault.Collateral in lines:
        # no underlying is listed under the empty name: an untracked line needs no lookup
        u: uint256 = 0
        if line.underlying != empty(bytes32):
            u = self.underlying_ids[line.underlying]
        price: uint256 = 0
        if u != 0 and self._spot_key(self.listings[u].keys) == line.price_key:
            # priced by its underlying's spot feed: the context reads it (same feeds, same
            # order as reading the price first)
            if mask & (1 << u) == 0:
                ctx[u] = self._context(u, optioned, hint)
                mask |= 1 << u
            price = ctx[u].spot
        else:
            price = self._price(line.price_key, hint)
        value: uint256 = math._mul_div(line.balance, price, WAD, False)
        totals[0] += value
        totals[1] += math._mul_div(value, line.mm_haircut, WAD, True)
        totals[2] += math._mul_div(value, line.im_haircut, WAD, True)
        if u != 0:
            if mask & (1 << u) == 0:
                ctx[u] = self._context(u, optioned, hint)
                mask |= 1 << u
            exposure[u] += convert(value, int256)
    # perps: linear exposure, unsettled funding, notional for the add-on
    for line: IClearinghouse.PerpLine in positions.perps:
        u: uint256 = line.underlying
        if mask & (1 << u) == 0:
            ctx[u] = self._context(u, optioned, hint)
            mask |= 1 << u
        spot: uint256 = ctx[u].spot
        size: int256 = 0
        cost: int256 = 0
        size, cost = fixed._perp_line(line.line)
        cumulative: int256 = 0
        premium: int256 = 0
        updated_at: uint256 = 0
        cumulative, premium, updated_at = fixed._funding_state(line.state)
        cumulative = fixed._funding_now(
            cumulative, premium, updated_at, spot, positions.funding_cap, positions.funding_interval, block.timestamp
        )
        notional: int256 = fixed._floor_div(size * convert(spot, int256), IWAD)
        owed: int256 = fixed._floor_div(-size * (cumulative - line.funding), IWAD)
        cash += notional - cost + owed
        exposure[u] += notional
        perp_units[u] += convert(abs(size), uint256)
    # futures: marked to the index until expiry, as a perp without funding (exposure and
    # the perp add-on); from expiry at the stored settlement price, or without one at the
    # grid's least (longs) or greatest (shorts) spot, with no exposure
    for word: uint256 in positions.futures:
        u: uint256 = (word >> 32) & 255
        if mask & (1 << u) == 0:
            ctx[u] = self._context(u, optioned, hint)
            mask |= 1 << u
        size: int256 = 0
        cost: int256 = 0
        size, cost = fixed._future_line(word)
        spot: int256 = convert(ctx[u].spot, int256)
        if block.timestamp < (word >> 40) & M32:
            notional: int256 = fixed._floor_div(size * spot, IWAD)
            cash += notional - cost
            exposure[u] += notional
            perp_units[u] += convert(abs(size), uint256)
        else:
            price: uint256 = staticcall MARKETS.settlement_price(word & M32)
            if price != 0:
                cash += fixed._floor_div(size * convert(price, int256), IWAD) - cost
            elif hint & 1 != 0:
                notional: int256 = fixed._floor_div(size * spot, IWAD)
                cash += notional - cost
                exposure[u] += notional
                perp_units[u] += convert(abs(size), uint256)
            else:
                # |size| < 2**87, spot < 2**128, 1e6 + shock <= 4e6 < 2**22: the product fits
                cash += fixed._floor_div(size * spot * (IMILLION + self._shock_bound(u, ctx[u].risk, size > 0)), IWAD * IMILLION) - cost
    equity: int256 = cash + convert(totals[0], int256)
    risk: uint256 = 0
    for u: uint256 in range(1, MAX_UNDERLYINGS + 1):
        if mask & (1 << u) == 0:
            if optioned & (1 << u) == 0:
                continue
            # held through options only: its context is read here
            ctx[u] = self._context(u, optioned, hint)
            mask |= 1 << u
        c: Context = ctx[u]
        acc: uint256[ACC_SIZE] = empty(uint256[ACC_SIZE])
        stale: uint256 = 0
        only: uint256 = (hint >> (8 * u)) & 255
        assert only < c.scenarios, "engine: bad hint"
        # DETAIL (the `risk` view) reads the focus underlying's options alone: its margin
        # fields are partial and never used
        if optioned & (1 << u) != 0 and (mode != DETAIL or u == focus):
            acc, stale = self._sum_options(c, (heads >> (8 * u)) & 255, positions.options, links, mode == COLLECT, self._reads(c.scenarios, only, hint))
            v.stale |= stale
        # option value, then the worst weighted scenario loss L_u
        equity += self._floor(self._signed(unsafe_add(acc[0], acc[SHORTS])) * convert(c.quantum, int256), IWAD)
        worst: int256 = 0
        worst_scenario: uint256 = 0
        pnl: DynArray[int256, risk_layout.MAX_SCENARIOS] = []
        worst, worst_scenario, pnl = self._worst(c, self._grid(u, c.risk), acc, exposure[u], mode == DETAIL, only)
        loss: uint256 = convert(-worst, uint256)
        if u == focus:
            v.worst_scenario = worst_scenario
            v.loss = loss
            v.pnl = pnl
        # add-ons: concentration (C_u, at the top; free when L_u <= free_u: one shift, mask
        # and compare), perp (rate × notional), short option (rate × spot per net short
        # call and put unit), quantization (one lane unit `quantum << shift` per option
        # unit: a lane is at most that much below the value it stands for; UNITS = Σ |z|)
        risk += loss
        free: uint256 = ((c.risk >> 208) & M24) * THOUSAND_USD
        if loss > free and c.risk >> 232 != 0:
            # at most CONCENTRATION_CAP·L_u (min ... / depth <= 4): mul_div's 512-bit product
            depth: uint256 = (c.risk >> 232) * THOUSAND_USD
            risk += math._mul_div(loss, min(loss - free, CONCENTRATION_CAP * depth), depth, True)
        if perp_units[u] != 0:
            risk += math._mul_div(perp_units[u] * c.spot, (c.risk >> 64) & M64, WAD * WAD, True)
        if acc[UNITS] != 0:
            short_units: uint256 = convert(max(-self._signed(acc[CALLS]), 0) + max(-self._signed(acc[PUTS]), 0), uint256)
            if short_units != 0:
                risk += math._mul_div(short_units * c.spot, (c.risk >> 128) & M64, WAD * WAD, True)
            risk += math._mul_div(acc[UNITS], c.quantum, WAD, True)
    v.margin = IRiskEngine.Margin(
        equity=equity,
        initial=math._mul_div(risk, self._param(0), WAD, True) + totals[2],
        maintenance=risk + totals[1],
    )
    v.touched = mask
    return v


@internal
@view
def _view_margin(account: uint256, cash_adjust: int256) -> IRiskEngine.Margin:
    """
    @dev `_value` for views: stale arrays are computed in memory, nothing is stored.
    """
    return self._value(account, cash_adjust, PLAIN, 0, 0).margin


@internal
def _refresh_margin(account: uint256, hint: uint256) -> IRiskEngine.Margin:
    """
    @dev Values the account; if some arrays were stale, stores them (`_store_stale`) and
         values it again, from storage. `hint`: see `refresh_bound`.
    """
    v: Valuation = self._value(account, 0, COLLECT, 0, hint)
    if v.stale == 0:
        return v.margin
    self._store_stale(account, v.touched, v.stale, hint)
    return self._value(account, 0, PLAIN, 0, hint).margin


@internal
def _store_stale(account: uint256, touched: uint256, stale: uint256, hint: uint256):
    """
    @dev Stores the account's stale arrays (bit i of `stale`: option position i), one
         risk-model call per underlying (`touched`), in position order, opening the
         underlying's epoch first. Its own frame: the valuation's memory stays small.
    """
    pairs: DynArray[uint256, MAX_OPTIONS // 2] = self._positions(account).options
    for u: uint256 in range(1, MAX_UNDERLYINGS + 1):
        if touched & (1 << u) == 0:
            continue
        ctx: Context = empty(Context)
        ids: DynArray[uint256, MAX_BATCH] = []
        for i: uint256 in range(2 * len(pairs), bound=MAX_OPTIONS):
            if stale & (1 << i) == 0:
                continue
            word: uint256 = fixed._pair_word(pairs[i // 2], i % 2)
            if (word >> 32) & 255 != u:
                continue
            if not ctx.stored:
                ctx = self._current_context(u, hint)
            elif len(ids) == MAX_BATCH:
                # more stale options than one call prices (MAX_OPTIONS > MAX_BATCH)
                self._store_arrays(u, ctx, ids)
                ids = []
            ids.append(word & M32)
        self._store_arrays(u, ctx, ids)


@internal
@view
def _sum_options(
    c: Context, head: uint256, pairs: DynArray[uint256, MAX_OPTIONS // 2], links: uint256[LINK_WORDS], collect: bool, reads: uint256
) -> (uint256[ACC_SIZE], uint256):
    """
    @dev Sums the options of one underlying (context `c`), walking its chain from `head`
         (1 + a position index into the stored `pairs`, next ones in `links`, see `_value`),
         in two's complement:
         acc[s] = A(s) = Σ z·q_s with z = size << shift; then at SHORTS Σ z of the shorts,
         at UNITS Σ |z|, at CALLS and PUTS the net call and put units. Stale arrays are
         computed in memory, or with `collect` skipped and returned as a bitmask of
         position indices. `reads` (see `_reads`) masks word 0 for the epoch check and
         says which words past the first a current array is read for: with a hint, the
         other lanes' sums are partial. Its LIQUIDATION bit (a liquidation's valuation)
         makes an UNSETTLED array never current: it is computed in memory as the
         liquidation values it (`_compute_array`), never reported stale.
    """
    acc: uint256[ACC_SIZE] = empty(uint256[ACC_SIZE])
    stale: uint256 = 0
    link: uint256 = head
    for unused: uint256 in range(MAX_OPTIONS):
        if link == 0:
            break
        i: uint256 = link - 1
        # the position's half in the low 128 bits (see lib/fixed.vy `_pair_word`)
        half: uint256 = pairs[i // 2] >> (128 * (i % 2))
        link = (links[i // 32] >> (8 * (i % 32))) & 255
        instrument_id: uint256 = half & M32
        w0: uint256 = self.arrays[instrument_id][0]
        w1: uint256 = 0
        w2: uint256 = 0
        current: bool = w0 & reads == c.epoch and c.stored
        # if/else rather than a second `continue`: with one here, the venom code generator
        # (0.4.3) ran this loop past the end of `options` for some inputs
        if not current and collect and w0 & reads < LIQUIDATION:
            # skipped: stored before the account is valued again
            stale |= 1 << i
        else:
            if not current:
                words: uint256[risk_layout.ARRAY_WORDS] = self._compute_array(self._instrument(instrument_id), c, reads)
                w0 = words[0]
                w1 = words[1]
                w2 = words[2]
            else:
                if reads & READ_WORD1 != 0:
                    w1 = self.arrays[instrument_id][1]
                if reads & READ_WORD2 != 0:
                    w2 = self.arrays[instrument_id][2]
            size: int256 = convert(convert(half << 128, bytes32), int256) >> 176
            # an expired option without a settlement price: longs count for nothing (no
            # value, no risk), shorts at their worst intrinsic value (flat lanes)
            if w0 < risk_layout.UNSETTLED or size < 0:
                scale: uint256 = (w0 >> 32) & 255
                # z = size << shift in two's complement: |size| < 2**79 (int80 in the
                # clearinghouse's position halves) and shift <= MAX_SHIFT (103), so
                # |z| < 2**182; lanes < 2**19, so every product is below 2**201 and a sum over
                # at most MAX_OPTIONS (2**7) options below 2**208: the unsafe arithmetic here
                # is exact, and so is A(s) − A(0) as an int256
                z: uint256 = convert(convert(size, bytes32), uint256) << scale
                # lanes of word 0 (after the header), then of words 1 and 2 when the grid uses them
                acc[0] = unsafe_add(acc[0], unsafe_mul(z, (w0 >> 40) & risk_layout.LANE_MASK))
                acc[1] = unsafe_add(acc[1], unsafe_mul(z, (w0 >> 59) & risk_layout.LANE_MASK))
                acc[2] = unsafe_add(acc[2], unsafe_mul(z, (w0 >> 78) & risk_layout.LANE_MASK))
                acc[3] = unsafe_add(acc[3], unsafe_mul(z, (w0 >> 97) & risk_layout.LANE_MASK))
                acc[4] = unsafe_add(acc[4], unsafe_mul(z, (w0 >> 116) & risk_layout.LANE_MASK))
                acc[5] = unsafe_add(acc[5], unsafe_mul(z, (w0 >> 135) & risk_layout.LANE_MASK))
                acc[6] = unsafe_add(acc[6], unsafe_mul(z, (w0 >> 154) & risk_layout.LANE_MASK))
                acc[7] = unsafe_add(acc[7], unsafe_mul(z, (w0 >> 173) & risk_layout.LANE_MASK))
                acc[8] = unsafe_add(acc[8], unsafe_mul(z, (w0 >> 192) & risk_layout.LANE_MASK))
                acc[9] = unsafe_add(acc[9], unsafe_mul(z, (w0 >> 211) & risk_layout.LANE_MASK))
                acc[10] = unsafe_add(acc[10], unsafe_mul(z, (w0 >> 230) & risk_layout.LANE_MASK))
                if w1 != 0:
                    acc[11] = unsafe_add(acc[11], unsafe_mul(z, w1 & risk_layout.LANE_MASK))
                    acc[12] = unsafe_add(acc[12], unsafe_mul(z, (w1 >> 19) & risk_layout.LANE_MASK))
                    acc[13] = unsafe_add(acc[13], unsafe_mul(z, (w1 >> 38) & risk_layout.LANE_MASK))
                    acc[14] = unsafe_add(acc[14], unsafe_mul(z, (w1 >> 57) & risk_layout.LANE_MASK))
                    acc[15] = unsafe_add(acc[15], unsafe_mul(z, (w1 >> 76) & risk_layout.LANE_MASK))
                    acc[16] = unsafe_add(acc[16], unsafe_mul(z, (w1 >> 95) & risk_layout.LANE_MASK))
                    acc[17] = unsafe_add(acc[17], unsafe_mul(z, (w1 >> 114) & risk_layout.LANE_MASK))
                    acc[18] = unsafe_add(acc[18], unsafe_mul(z, (w1 >> 133) & risk_layout.LANE_MASK))
                    acc[19] = unsafe_add(acc[19], unsafe_mul(z, (w1 >> 152) & risk_layout.LANE_MASK))
                    acc[20] = unsafe_add(acc[20], unsafe_mul(z, (w1 >> 171) & risk_layout.LANE_MASK))
                    acc[21] = unsafe_add(acc[21], unsafe_mul(z, (w1 >> 190) & risk_layout.LANE_MASK))
                    acc[22] = unsafe_add(acc[22], unsafe_mul(z, (w1 >> 209) & risk_layout.LANE_MASK))
                    acc[23] = unsafe_add(acc[23], unsafe_mul(z, (w1 >> 228) & risk_layout.LANE_MASK))
                if w2 != 0:
                    acc[24] = unsafe_add(acc[24], unsafe_mul(z, w2 & risk_layout.LANE_MASK))
                    acc[25] = unsafe_add(acc[25], unsafe_mul(z, (w2 >> 19) & risk_layout.LANE_MASK))
                    acc[26] = unsafe_add(acc[26], unsafe_mul(z, (w2 >> 38) & risk_layout.LANE_MASK))
                    acc[27] = unsafe_add(acc[27], unsafe_mul(z, (w2 >> 57) & risk_layout.LANE_MASK))
                    acc[28] = unsafe_add(acc[28], unsafe_mul(z, (w2 >> 76) & risk_layout.LANE_MASK))
                    acc[29] = unsafe_add(acc[29], unsafe_mul(z, (w2 >> 95) & risk_layout.LANE_MASK))
                    acc[30] = unsafe_add(acc[30], unsafe_mul(z, (w2 >> 114) & risk_layout.LANE_MASK))
                    acc[31] = unsafe_add(acc[31], unsafe_mul(z, (w2 >> 133) & risk_layout.LANE_MASK))
                    acc[32] = unsafe_add(acc[32], unsafe_mul(z, (w2 >> 152) & risk_layout.LANE_MASK))
                    acc[33] = unsafe_add(acc[33], unsafe_mul(z, (w2 >> 171) & risk_layout.LANE_MASK))
                    acc[34] = unsafe_add(acc[34], unsafe_mul(z, (w2 >> 190) & risk_layout.LANE_MASK))
                    acc[35] = unsafe_add(acc[35], unsafe_mul(z, (w2 >> 209) & risk_layout.LANE_MASK))
                    acc[36] = unsafe_add(acc[36], unsafe_mul(z, (w2 >> 228) & risk_layout.LANE_MASK))
                # tail of `acc`: Σ z of the shorts (valued one lane up: Σ z·(q_0 + 1) = A(0) + Σ z),
                # Σ |z|, net call and net put units (|size| < 2**79, at most MAX_OPTIONS of them)
                if size < 0:
                    acc[SHORTS] = unsafe_add(acc[SHORTS], z)
                acc[UNITS] = unsafe_add(acc[UNITS], convert(abs(size), uint256) << scale)
                if (half >> 40) & 255 == CALL:
                    acc[CALLS] = unsafe_add(acc[CALLS], convert(convert(size, bytes32), uint256))
                else:
                    acc[PUTS] = unsafe_add(acc[PUTS], convert(convert(size, bytes32), uint256))
    return acc, stale


@internal
@pure
def _worst(
    c: Context, grid: uint256[risk_layout.GRID_WORDS], acc: uint256[ACC_SIZE], exposure: int256, detail: bool, only: uint256
) -> (int256, uint256, DynArray[int256, risk_layout.MAX_SCENARIOS]):
    """
    @dev The worst weighted scenario PnL of an underlying (<= 0), its scenario and, with
         `detail`, the unweighted PnL vector: PnL(s) = floor(E·shock_s / 1e6) +
         floor((A(s) − A(0))·quantum / 1e18), weighted W(s) = PnL(s)·weight_s. The worst
         scenario is the first with the least W(s) (0 if none is negative); its loss is
         floor(W / 1e6), the least of the floored W(s) since a floor never reorders.
         With `only` (a hinted scenario, else 0) that scenario alone is evaluated.
    """
    pnl_vector: DynArray[int256, risk_layout.MAX_SCENARIOS] = [0]
    # |E| < 2**230 and |shock| <= 3e6 < 2**22, so every E·shock is below 2**252; |A(s) − A(0)|
    # <= Σ|z|·(2**19 − 1) < 2**200 with Σ|z| (UNITS) < 2**181, and quantum < 2**54: then the
    # floors are below 2**233 and 2**200, their sum below 2**234, and times a weight
    # (<= 1e6 < 2**20) below 2**254. Unchecked arithmetic is exact under both bounds.
    fast: bool = exposure > -2**230 and exposure < 2**230
    # a separate test: in the expression above it ran the compiler out of stack
    if acc[UNITS] >= 2**181:
        fast = False
    # the least W(s) and its scenario (in memory: the stack is full here)
    worst: int256[2] = empty(int256[2])
    first: uint256 = 1
    last: uint256 = c.scenarios
    if only != 0:
        first = only
        last = only + 1
    # the grid word holding scenario s, shifted so that s is in its low 32 bits
    lanes: uint256 = grid[first // risk_layout.GRID_LANES] >> (first % risk_layout.GRID_LANES * risk_layout.GRID_BITS)
    for s: uint256 in range(first, last, bound=risk_layout.MAX_SCENARIOS):
        if s % risk_layout.GRID_LANES == 0:
            lanes = grid[s // risk_layout.GRID_LANES]
        # the grid's int16 shock and uint14 weight, in 0.01% units
        shock: int256 = unsafe_mul(convert(convert(lanes << 240, bytes32), int256) >> 240, risk_layout.IGRID_UNIT)
        weight: int256 = convert(unsafe_mul((lanes >> 18) & (2**14 - 1), risk_layout.GRID_UNIT), int256)
        lanes >>= risk_layout.GRID_BITS
        options: int256 = convert(convert(unsafe_sub(acc[s], acc[0]), bytes32), int256)
        pnl: int256 = 0
        weighted: int256 = 0
        if fast:
            # floors without a branch: SDIV truncates toward zero, and for a < 0,
            # floor(a / d) = trunc((a − (d − 1)) / d); `a >> 255` is −1 for a < 0, else 0
            a: int256 = unsafe_mul(exposure, shock)
            pnl = unsafe_div(unsafe_add(a, unsafe_mul(a >> 255, IMILLION - 1)), IMILLION)
            a = unsafe_mul(options, convert(c.quantum, int256))
            pnl = unsafe_add(pnl, unsafe_div(unsafe_add(a, unsafe_mul(a >> 255, IWAD - 1)), IWAD))
            weighted = unsafe_mul(pnl, weight)
        else:
            pnl, weighted = self._pnl(exposure, shock, options, convert(c.quantum, int256), weight)
        if weighted < worst[0]:
            worst[0] = weighted
            worst[1] = convert(s, int256)
        if detail:
            pnl_vector.append(pnl)
    least: int256 = self._floor(worst[0], IMILLION)
    return least, convert(worst[1], uint256), pnl_vector


@internal
@view
def _context(u: uint256, optioned: uint256, hint: uint256) -> Context:
    """
    @dev Oracle reads, epoch and grid of underlying `u`: its spot, and its vol only if bit u
         of `optioned` is set (the account holds an option on u; else vol and its round are
         0). A feed a valuation does not need never blocks it. Bit 0 of `hint` set: the
         liquidation reads of the router (see `refresh_bound`). The stored epoch is current iff
         both oracle rounds match it, it is at most `max_array_age` old and its horizon (an
         expiry it stored an array for) has not come; otherwise the context carries the epoch
         that would open now (`stored` false).
    """
    ctx: Context = empty(Context)
    keys: uint256 = self.listings[u].keys
    vol_key: bytes32 = empty(bytes32)
    if optioned & (1 << u) != 0:
        vol_key = self._vol_key(keys)
    ctx.spot, ctx.spot_round, ctx.vol, ctx.vol_round = staticcall ORACLE.price_rounds(
        self._spot_key(keys), vol_key, hint & 1 != 0
    )
    ctx.risk = self.listings[u].risk
    ctx.quantum = ctx.risk & M64
    ctx.scenarios = (ctx.risk >> 192) & 255
    record: uint256 = self.epochs[u]
    ctx.epoch = (record >> 64) & M32
    ctx.opened_at = record & M40
    age: uint256 = block.timestamp - ctx.opened_at
    if (
        convert(record >> 176, uint80) == ctx.spot_round
        and convert((record >> 96) & (2**80 - 1), uint80) == ctx.vol_round
        and age <= self._param(1)
        and age < (record >> 40) & M24
    ):
        ctx.stored = True
    else:
        ctx.epoch += 1
        ctx.opened_at = block.timestamp
    return ctx


# ---------------------------------------------------------------- risk arrays


@internal
@view
def _compute_array(instrument: IClearinghouse.Instrument, ctx: Context, reads: uint256) -> uint256[risk_layout.ARRAY_WORDS]:
    """
    @dev The option's risk array in the epoch of `ctx`, priced by the risk model
         (`RiskModel.compute_array`: every input it depends on is passed). Only stale
         arrays are computed, so a check with every array current never calls it. In a
         liquidation's valuation (bit 255 of `reads`, see `_sum_options`) an option
         expired without a settlement price is valued at its intrinsic value at every
         scenario's spot (the grid's shocks as they are: no flat worst lane, no UNSETTLED
         flag), as if still live with no time left: priced with an expiry one second ahead
         and an epoch opened then (T = 0: no time value, D = 1). That array is never stored.
    """
    array_ctx: IRiskModel.ArrayContext = self._array_context(instrument.underlying, ctx)
    terms: IRiskModel.Terms = self._terms(instrument)
    if reads >= LIQUIDATION and terms.expiry <= block.timestamp and terms.settlement_price == 0:
        terms.expiry = block.timestamp + 1
        array_ctx.opened_at = terms.expiry
    return staticcall self.risk_model.compute_array(array_ctx, terms)


@internal
@view
def _array_context(u: uint256, ctx: Context) -> IRiskModel.ArrayContext:
    """
    @dev What the risk model prices the arrays of underlying `u` in the epoch of `ctx` from.
    """
    return IRiskModel.ArrayContext(
        spot=ctx.spot,
        vol=ctx.vol,
        epoch=ctx.epoch,
        opened_at=ctx.opened_at,
        now=block.timestamp,
        scenarios=ctx.scenarios,
        grid=self._grid(u, ctx.risk),
        quantum=ctx.quantum,
        shocks=self.listings[u].shocks,
        rate=self._param(2),
    )


@internal
@pure
def _terms(instrument: IClearinghouse.Instrument) -> IRiskModel.Terms:
    return IRiskModel.Terms(
        kind=instrument.kind,
        strike=instrument.strike,
        expiry=instrument.expiry,
        settlement_price=instrument.settlement_price,
    )


@internal
def _store_arrays(u: uint256, ctx: Context, ids: DynArray[uint256, MAX_BATCH]):
    """
    @dev Computes the arrays of options `ids` of underlying `u` in its current epoch `ctx`
         in one risk-model call and stores them: only the words the grid uses (a word past
         them is never read while the array is current, see `_reads`). An array with time
         value (expiry still ahead) ends the epoch at that expiry: the horizon shrinks to
         the earliest of them (one warm write, only when it shrinks). The terms are read
         here (again, for `refresh`: a warm read), so that the callers' frames, below a
         margin check's, stay small.
    """
    if len(ids) == 0:
        return
    terms: DynArray[IRiskModel.Terms, MAX_BATCH] = []
    for instrument_id: uint256 in ids:
        terms.append(self._terms(self._instrument(instrument_id)))
    arrays: DynArray[uint256[risk_layout.ARRAY_WORDS], MAX_BATCH] = staticcall self.risk_model.compute_arrays(
        self._array_context(u, ctx), terms
    )
    used: uint256 = risk_layout._words(ctx.scenarios)
    record: uint256 = self.epochs[u]
    horizon: uint256 = (record >> 40) & M24
    shrunk: bool = False
    for i: uint256 in range(len(ids), bound=MAX_BATCH):
        for w: uint256 in range(used, bound=risk_layout.ARRAY_WORDS):
            self.arrays[ids[i]][w] = arrays[i][w]
        if terms[i].expiry > block.timestamp and terms[i].expiry - ctx.opened_at < horizon:
            # opened_at <= now < expiry
            horizon = terms[i].expiry - ctx.opened_at
            shrunk = True
    if shrunk:
        self.epochs[u] = (record & ~(M24 << 40)) | (horizon << 40)
    log RiskArraysStored(underlying=u, epoch=ctx.epoch & M32, instruments=ids)


@internal
def _open_epoch(u: uint256, ctx: Context):
    self.epochs[u] = (
        (convert(ctx.spot_round, uint256) << 176)
        | (convert(ctx.vol_round, uint256) << 96)
        | ((ctx.epoch & (2**32 - 1)) << 64)
        | (M24 << 40)
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
def _current_context(u: uint256, hint: uint256) -> Context:
    """
    @dev The context of `u` with its current epoch in storage (opened now if stale).
    """
    ctx: Context = self._context(u, 1 << u, hint)
    if not ctx.stored:
        self._open_epoch(u, ctx)
        ctx.stored = True
    return ctx


# ---------------------------------------------------------------- small helpers


@internal
@view
def _price(key: bytes32, hint: uint256) -> uint256:
    """
    @dev A collateral's price; bit 0 of `hint`: the router's liquidation read.
    """
    price: uint256 = 0
    round_id: uint80 = 0
    unused: uint256 = 0
    unused_round: uint80 = 0
    price, round_id, unused, unused_round = staticcall ORACLE.price_rounds(key, empty(bytes32), hint & 1 != 0)
    return price


@internal
@view
def _check_new_risk():
    # the sequencer and the settlement asset's feed in one call (it reverts with the
    # oracle's reason when the check fails)
    ok: bool = staticcall ORACLE.check_new_risk(self.settlement_key)


@internal
@view
def _new_risk_open() -> bool:
    """
    @dev `_check_new_risk` without reverting.
    """
    ok: bool = False
    response: Bytes[32] = b""
    ok, response = raw_call(
        ORACLE.address,
        abi_encode(self.settlement_key, method_id=method_id("check_new_risk(bytes32)")),
        max_outsize=32,
        is_static_call=True,
        revert_on_failure=False,
    )
    return ok


@internal
@pure
def _decode_grid(words: uint256[risk_layout.GRID_WORDS], n: uint256) -> (DynArray[int256, risk_layout.MAX_SCENARIOS], DynArray[uint256, risk_layout.MAX_SCENARIOS], DynArray[uint256, risk_layout.MAX_SCENARIOS]):
    shocks: DynArray[int256, risk_layout.MAX_SCENARIOS] = []
    moves: DynArray[uint256, risk_layout.MAX_SCENARIOS] = []
    weights: DynArray[uint256, risk_layout.MAX_SCENARIOS] = []
    for s: uint256 in range(n, bound=risk_layout.MAX_SCENARIOS):
        lane: uint256 = words[s // risk_layout.GRID_LANES] >> (s % risk_layout.GRID_LANES * risk_layout.GRID_BITS)
        shocks.append(risk_layout._shock(lane))
        moves.append((lane >> 16) & 3)
        weights.append(risk_layout._weight(lane))
    return shocks, moves, weights


@internal
@pure
def _spot_key(keys: uint256) -> bytes32:
    return convert(keys & ~LOW128, bytes32)


@internal
@pure
def _vol_key(keys: uint256) -> bytes32:
    return convert(keys << 128, bytes32)


@internal
@view
def _grid(u: uint256, risk: uint256) -> uint256[risk_layout.GRID_WORDS]:
    """
    @dev The packed grid of `u` (`risk` its risk word): the default grid from code, a custom
         one from storage (only the words its scenarios use, 8 each).
    """
    if risk & CUSTOM_GRID == 0:
        return DEFAULT_GRID
    words: uint256[risk_layout.GRID_WORDS] = empty(uint256[risk_layout.GRID_WORDS])
    for i: uint256 in range((((risk >> 192) & 255) + risk_layout.GRID_LANES - 1) // risk_layout.GRID_LANES, bound=risk_layout.GRID_WORDS):
        words[i] = self.grid_words[u][i]
    return words


@internal
@view
def _positions(account: uint256) -> IClearinghouse.Positions:
    # one call site: the decoder of this struct is large
    return staticcall CLEARING.positions(account)


@internal
@view
def _word_at(offset: uint256) -> uint256:
    """
    @dev The calldata word at byte `offset` (reverts past the end of the calldata).
    """
    return extract32(slice(msg.data, offset, 32), 0, output_type=uint256)


@internal
@view
def _account_state(account: uint256) -> (int256, DynArray[IVault.Collateral, MAX_ASSETS]):
    return staticcall VAULT.account_state(account)


@internal
@view
def _instrument(instrument_id: uint256) -> IClearinghouse.Instrument:
    return staticcall MARKETS.instrument(instrument_id)


@internal
@view
def _shock_bound(u: uint256, risk: uint256, least: bool) -> int256:
    """
    @dev The least (`least`) or greatest spot shock (millionths) of `u`'s grid, kept within
         ±EXPIRY_BAND (an expired future before its settlement, see `risk_layout`); scenario
         0 (no shock) is in it, so the least is <= 0 <= the greatest.
    """
    grid: uint256[risk_layout.GRID_WORDS] = self._grid(u, risk)
    bound: int256 = 0
    for s: uint256 in range((risk >> 192) & 255, bound=risk_layout.MAX_SCENARIOS):
        shock: int256 = risk_layout._shock(grid[s // risk_layout.GRID_LANES] >> (s % risk_layout.GRID_LANES * risk_layout.GRID_BITS))
        if (shock < bound) == least and shock != bound:
            bound = shock
    return max(min(bound, risk_layout.IEXPIRY_BAND), -risk_layout.IEXPIRY_BAND)


@internal
@pure
def _pnl(exposure: int256, shock: int256, options: int256, quantum: int256, weight: int256) -> (int256, int256):
    """
    @dev A scenario's PnL and weighted PnL (before its floor division) with checked
         arithmetic: `_worst`'s path for magnitudes its unchecked path does not cover.
    """
    pnl: int256 = self._floor(exposure * shock, IMILLION) + self._floor(options * quantum, IWAD)
    return pnl, pnl * weight


@internal
@pure
def _floor(a: int256, d: int256) -> int256:
    """
    @dev floor(a / d) for a constant d > 1 (1e6 or 1e18): `fixed._floor_div` without its
         checks, which cannot fail here (SDIV truncates toward zero; d > 1 cannot overflow).
    """
    q: int256 = unsafe_div(a, d)
    if a < 0 and unsafe_mul(q, d) != a:
        q = unsafe_sub(q, 1)
    return q


@internal
@pure
def _signed(x: uint256) -> int256:
    return convert(convert(x, bytes32), int256)


@internal
@pure
def _reads(scenarios: uint256, only: uint256, hint: uint256) -> uint256:
    """
    @dev `_sum_options`'s mask of an array's word 0: the epoch bits (M32), the risk-array
         words past the first that a check reads (READ_WORD1, READ_WORD2): every word the
         grid's `scenarios` use, or with a hinted scenario `only` (else 0) the word of its
         lane; and, in a liquidation's valuation (bit 0 of `hint`), LIQUIDATION.
    """
    reads: uint256 = M32 | ((hint & 1) << 255)
    if only != 0:
        return reads | (((1 << risk_layout._lane_at(only)[0]) & 6) << 248)
    if scenarios > risk_layout.FIRST_LANES + risk_layout.LANES:
        return reads | READ_WORD1 | READ_WORD2
    if scenarios > risk_layout.FIRST_LANES:
        return reads | READ_WORD1
    return reads



@internal
@view
def _param(i: uint256) -> uint256:
    """
    @dev Field `i` of `params`: 0 im_factor, 1 max_array_age, 2 rate.
    """
    return (self.params >> (64 * i)) & M64




# ---------------------------------------------------------------- admin internals


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
def _check_risk_model():
    """
    @dev The configuration setters trust whatever `risk_model` is now: the owner's
         `set_risk_model` hands the configuration to a new model and takes it from the old.
    """
    self._require(msg.sender == self.risk_model.address, "engine: not risk model")
