# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title crossmargin clearinghouse
@notice Lists the instruments (one perpetual per underlying, European calls and puts),
        holds every account's positions, applies the trades the exchange matched, accrues
        and settles perp funding, and settles expired options into vault cash. The margin
        engine values what it holds; after each trade both accounts must be above initial
        margin, unless the trade only reduces their risk.

        Cash flows (WAD USD), each rounded against the account it touches:
          option premium  the buyer pays ceil(|size|·price), the seller gets floor
          perp cost       cost += ceil(size·price); realized into cash when flat
          funding         owed = ceil(size·(F − F_position)), F the cumulative index
          expiry payoff   floor(size·intrinsic(settlement price))
          fees            as the exchange computed them, to the insurance and fee accounts
        So the sum of all cash and open positions never grows: the vault stays solvent.
@custom:security All state-changing entry points hold the lock. The clearinghouse calls
        the vault (`settle_cash`, `paused`), the oracle router and the margin engine; the
        engine calls back only the views `positions` and `instruments` (`@reentrant`).
        Settlement and trades that only reduce risk are never paused. Accounts in a
        liquidation auction cannot trade; the liquidator moves fractions of their
        positions to bidders (`transfer_fraction`), which is never paused either.
"""

from snekmate.auth import ownable
from snekmate.auth import ownable_2step
from snekmate.utils import math

from interfaces import IClearinghouse
from interfaces import IEngine
from interfaces import IRiskEngine
from interfaces import IVault
from lib import fixed

initializes: ownable
initializes: ownable_2step[ownable := ownable]

exports: (
    ownable_2step.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
)

implements: IEngine
implements: IClearinghouse


interface IOracleRouter:
    def price(key: bytes32) -> uint256: view
    def settlement_price(key: bytes32, expiry: uint256, round_hint: uint80) -> uint256: view


# @dev What the operator band reads of the margin engine: an option's current risk array
#      (`refresh` stores it when stale) and the underlying's quantum (in `Listed`).
interface IMarks:
    def refresh(instrument_ids: DynArray[uint256, 64]) -> uint256: nonpayable
    def risk_array(instrument_id: uint256) -> (uint256, uint256, DynArray[uint256, 32], bool): view
    def underlyings(underlying: uint256) -> Listed: view


struct Listed:
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


WAD: constant(uint256) = 10**18
IWAD: constant(int256) = 10**18
MAX_UNDERLYINGS: constant(uint256) = 16
# @dev Hard bound on option positions per account (the margin loop's bound).
MAX_OPTIONS: constant(uint256) = 128
# @dev The position cap a deployment starts with (see `set_max_options`).
DEFAULT_MAX_OPTIONS: constant(uint256) = 64
# @dev Instrument kinds.
PERP: constant(uint256) = 1
CALL: constant(uint256) = 2
PUT: constant(uint256) = 3
# @dev Longest option listed (s).
MAX_EXPIRY: constant(uint256) = 5 * 365 * 86_400
# @dev Funding parameter bounds.
MIN_FUNDING_INTERVAL: constant(uint256) = 3_600
MAX_FUNDING_INTERVAL: constant(uint256) = 86_400
MAX_FUNDING_CAP: constant(uint256) = 5 * 10**16
MIN_EMA_WINDOW: constant(uint256) = 60
MAX_EMA_WINDOW: constant(uint256) = 86_400
# @dev Bounds of the funding notional (WAD USD): a fill of this notional at the index moves
#      the premium EMA with its full time weight, a smaller one in proportion.
MIN_FUNDING_NOTIONAL: constant(uint256) = 100 * 10**18
MAX_FUNDING_NOTIONAL: constant(uint256) = 10**12 * 10**18
DEFAULT_FUNDING_NOTIONAL: constant(uint256) = 100_000 * 10**18
# @dev Operator bands (WAD fractions): defaults and most. An option's band is taken of its
#      mark, or of spot / OPTION_BAND_FLOOR when the mark is lower (so cheap wings can be
#      quoted).
DEFAULT_PERP_BAND: constant(uint256) = 10**16
DEFAULT_OPTION_BAND: constant(uint256) = 10**17
MAX_PERP_BAND: constant(uint256) = 10**17
MAX_OPTION_BAND: constant(uint256) = 10**18
OPTION_BAND_FLOOR: constant(uint256) = 100


struct PerpPosition:
    # signed size (WAD units)
    size: int256
    # signed cost of the open position (WAD USD): Σ size change × trade price, rounded up
    cost: int256
    # cumulative funding index when funding was last settled (WAD USD per unit)
    funding: int256


struct PackedPerp:
    # size (int128) in the low half, cost (int128) in the high half, two's complement
    line: uint256
    funding: int256


struct Funding:
    # cumulative funding per long unit (WAD USD); longs pay shorts while it rises
    cumulative: int256
    # EMA of the trade premium over the index (WAD fraction, signed)
    premium_ema: int256
    # time `cumulative` was last accrued (s)
    updated_at: uint256


# @dev The vault holding collateral and cash, and the oracle router.
VAULT: public(immutable(IVault))
ORACLE: public(immutable(IOracleRouter))
# @dev The margin engine valuing accounts (set once it is deployed).
engine: public(IRiskEngine)
# @dev The exchange allowed to call `trade`.
exchange: public(address)
# @dev The liquidator allowed to call `transfer_fraction`.
liquidator: public(address)
# @dev Most option positions an account may hold (<= MAX_OPTIONS).
# Funding: the capped EMA premium is paid per `funding_interval` (s), capped at
# `funding_cap` (WAD) per interval; the EMA moves over `ema_window` (s).
# The EMA moves by a fill's notional at the index over `funding_notional` (WAD USD), at
# most 1 (so dust cannot move it).
# @dev One word, read together on every trade and valuation: funding_interval (bits
# 0..31), ema_window (32..63), funding_cap (64..127), max_options (128..135),
# funding_notional (136..255).
settings: uint256

# @dev How far from the mark a fill an operator made for an account may be priced (WAD
# fractions): perp band (bits 0..63, of the index) | option band (64..127, of the engine's
# mark or spot / 100, the larger). Read only for operators' fills.
bands: uint256

# @dev Instruments by id (1..instrument_count); perp instrument id of each underlying.
instruments: HashMap[uint256, IClearinghouse.Instrument]
instrument_count: public(uint256)
perp_of: public(HashMap[uint256, uint256])
# @dev Funding state of each underlying's perpetual, one word (`_get_funding`).
funding_words: HashMap[uint256, uint256]
# @dev Option positions per account, two to a slot (`_load_options`); never a zero size.
# Each half is instrument (bits 0..31) | underlying (32..39) | kind (40..47) | size (int80,
# 48..127); their count is in `masks`. A position is found by scanning them in memory:
# they are read anyway by the margin check that follows every change, and an index map
# would cost a slot per position.
option_pairs: HashMap[uint256, uint256[MAX_OPTIONS // 2]]
# @dev Perp positions by account and underlying, packed in two slots (`_get_perp`).
perps: HashMap[uint256, HashMap[uint256, PackedPerp]]
# @dev Per account, one word: bit u set iff its perp on underlying u has a size (bits
# 1..MAX_UNDERLYINGS); the number of option positions in bits 128..135.
masks: HashMap[uint256, uint256]


event Traded:
    maker: indexed(uint256)
    taker: indexed(uint256)
    instrument: indexed(uint256)
    size: int256
    price: uint256


event OptionSettled:
    account: indexed(uint256)
    instrument: indexed(uint256)
    size: int256
    settlement_price: uint256
    payoff: int256


event FundingSettled:
    account: indexed(uint256)
    underlying: indexed(uint256)
    amount: int256


event InstrumentListed:
    instrument: indexed(uint256)
    underlying: indexed(uint256)
    kind: uint256
    strike: uint256
    expiry: uint256
    oi_cap: uint256


event OiCapSet:
    instrument: indexed(uint256)
    oi_cap: uint256


event MaxOptionsSet:
    max_options: uint256


event OperatorBandsSet:
    perp_band: uint256
    option_band: uint256


event FundingNotionalSet:
    notional: uint256


event FundingParamsSet:
    interval: uint256
    cap: uint256
    ema_window: uint256


event EngineSet:
    engine: indexed(address)


event ExchangeSet:
    exchange: indexed(address)


event LiquidatorSet:
    liquidator: indexed(address)


event PositionsTransferred:
    source: indexed(uint256)
    target: indexed(uint256)
    fraction: uint256


@deploy
def __init__(vault: IVault, oracle: IOracleRouter):
    """
    @dev Defaults: 64 options per account, funding paid over 8 hours, capped at 0.5% per
         interval, EMA over 1 hour, fills of 100,000 USD move it with full weight.
    """
    ownable.__init__()
    ownable_2step.__init__()
    VAULT = vault
    ORACLE = oracle
    self.settings = DEFAULT_MAX_OPTIONS << 128
    log MaxOptionsSet(max_options=DEFAULT_MAX_OPTIONS)
    self._set_funding_notional(DEFAULT_FUNDING_NOTIONAL)
    self._set_operator_bands(DEFAULT_PERP_BAND, DEFAULT_OPTION_BAND)
    self._set_funding_params(8 * 3_600, 5 * 10**15, 3_600)


# ---------------------------------------------------------------- trading


@external
def trade(fill: IEngine.Fill):
    """
    @notice Applies a matched trade: the maker's position changes by `fill.size`, the
            taker's by `-fill.size`; premiums, funding and fees move in cash; then both
            accounts must be above initial margin, unless the trade only reduces risk.
    @dev Only the exchange, which has checked the signed order.
    """
    assert msg.sender == self.exchange, "clearing: not exchange"
    instrument: IClearinghouse.Instrument = self.instruments[fill.instrument]
    assert instrument.kind != 0, "clearing: unknown instrument"
    assert fill.size != 0, "clearing: zero size"
    assert fill.price != 0, "clearing: zero price"
    assert fill.maker != fill.taker, "clearing: self trade"
    assert fill.insurance_fee <= fill.maker_fee + fill.taker_fee, "clearing: bad fee split"
    assert abs(fill.size) < 2**127, "clearing: size out of range"
    assert not staticcall VAULT.frozen(fill.maker) and not staticcall VAULT.frozen(fill.taker), "clearing: account in auction"

    u: uint256 = instrument.underlying
    maker_cash: int256 = -convert(fill.maker_fee, int256)
    taker_cash: int256 = -convert(fill.taker_fee, int256)
    maker_old: int256 = 0
    taker_old: int256 = 0
    maker_perp: PerpPosition = empty(PerpPosition)
    taker_perp: PerpPosition = empty(PerpPosition)
    if instrument.kind == PERP:
        cumulative: int256 = self._accrue_funding(u, fill.price, fill.size)
        maker_perp = self._get_perp(fill.maker, u)
        taker_perp = self._get_perp(fill.taker, u)
        maker_old = maker_perp.size
        taker_old = taker_perp.size
        maker_cash += self._trade_perp(fill.maker, u, fill.size, fill.price, cumulative)
        taker_cash += self._trade_perp(fill.taker, u, -fill.size, fill.price, cumulative)
    else:
        assert block.timestamp < instrument.expiry, "clearing: instrument expired"
        maker_words: DynArray[uint256, MAX_OPTIONS] = self._load_options(fill.maker)
        taker_words: DynArray[uint256, MAX_OPTIONS] = self._load_options(fill.taker)
        maker_old = self._size_in(maker_words, fill.instrument)
        taker_old = self._size_in(taker_words, fill.instrument)
        self._store_options(
            fill.maker, maker_words, self._with_size(maker_words, fill.instrument, u, instrument.kind, maker_old + fill.size, True)
        )
        self._store_options(
            fill.taker, taker_words, self._with_size(taker_words, fill.instrument, u, instrument.kind, taker_old - fill.size, True)
        )
        # the buyer pays the premium rounded up, the seller receives it rounded down
        units: uint256 = convert(abs(fill.size), uint256)
        paid: int256 = convert(math._mul_div(units, fill.price, WAD, True), int256)
        received: int256 = convert(math._mul_div(units, fill.price, WAD, False), int256)
        if fill.size > 0:
            maker_cash -= paid
            taker_cash += received
        else:
            maker_cash += received
            taker_cash -= paid

    # open interest counts long units; it may always fall, and rises only up to the cap
    oi: uint256 = instrument.open_interest + self._long(maker_old + fill.size) + self._long(taker_old - fill.size)
    oi -= self._long(maker_old) + self._long(taker_old)
    if oi > instrument.open_interest:
        assert oi <= instrument.oi_cap, "clearing: open interest cap"
    self.instruments[fill.instrument].open_interest = oi

    fees: uint256 = fill.maker_fee + fill.taker_fee
    entries: DynArray[IVault.CashDelta, 8] = [
        IVault.CashDelta(account=fill.maker, delta=maker_cash),
        IVault.CashDelta(account=fill.taker, delta=taker_cash),
    ]
    if fees != 0:
        entries.append(IVault.CashDelta(account=fill.insurance, delta=convert(fill.insurance_fee, int256)))
        entries.append(IVault.CashDelta(account=fill.recipient, delta=convert(fees - fill.insurance_fee, int256)))
    extcall VAULT.settle_cash(entries)

    paused: bool = staticcall VAULT.paused()
    self._check_trade(fill.maker, fill.instrument, instrument, maker_old, maker_perp, maker_cash, paused)
    self._check_trade(fill.taker, fill.instrument, instrument, taker_old, taker_perp, taker_cash, paused)
    if fill.operator_sides != 0:
        self._check_operator_price(fill.instrument, instrument, fill.price)
    log Traded(maker=fill.maker, taker=fill.taker, instrument=fill.instrument, size=fill.size, price=fill.price)


@external
def settle(account: uint256, instrument_id: uint256, round_hint: uint80):
    """
    @notice Settles `account`'s expired option into cash at the settlement price: the first
            oracle round at or after expiry (`round_hint`, see the oracle router). Anyone
            may call it; it is never paused.
    @param round_hint Used only by the instrument's first settlement, which stores the price
           for every later one.
    """
    instrument: IClearinghouse.Instrument = self.instruments[instrument_id]
    assert instrument.kind == CALL or instrument.kind == PUT, "clearing: not an option"
    assert block.timestamp >= instrument.expiry, "clearing: not expired"
    words: DynArray[uint256, MAX_OPTIONS] = self._load_options(account)
    size: int256 = self._size_in(words, instrument_id)
    assert size != 0, "clearing: no position"
    price: uint256 = instrument.settlement_price
    if price == 0:
        price = staticcall ORACLE.settlement_price(
            staticcall self.engine.spot_key(instrument.underlying), instrument.expiry, round_hint
        )
        self.instruments[instrument_id].settlement_price = price
    intrinsic: uint256 = 0
    if instrument.kind == CALL and price > instrument.strike:
        intrinsic = price - instrument.strike
    elif instrument.kind == PUT and instrument.strike > price:
        intrinsic = instrument.strike - price
    # longs receive the payoff rounded down, shorts pay it rounded up
    payoff: int256 = fixed._floor_div(size * convert(intrinsic, int256), IWAD)
    self._store_options(account, words, self._with_size(words, instrument_id, instrument.underlying, instrument.kind, 0, True))
    if size > 0:
        self.instruments[instrument_id].open_interest -= convert(size, uint256)
    extcall VAULT.settle_cash([IVault.CashDelta(account=account, delta=payoff)])
    log OptionSettled(account=account, instrument=instrument_id, size=size, settlement_price=price, payoff=payoff)


@external
def transfer_fraction(source: uint256, target: uint256, fraction: uint256) -> (int256, int256):
    """
    @notice Moves `fraction` (WAD, <= 1) of every position of `source` to `target`: a
            bidder buying a slice of a liquidated account. Each size moved rounds toward
            zero (the source keeps the remainder); a perp's cost moves pro rata with it.
            Funding of the perps touched is settled first, and a bidder's perp that nets
            to zero realizes its cost.
    @return The cash this settles for the source and the target (WAD, signed): the
            liquidator adds it through the vault's `transfer_fraction`, before the slice
            of cash moves.
    @dev Only the liquidator. Open interest can only fall (longs move, or net out against
         the bidder's shorts), so no cap applies; the bidder's position cap does.
    """
    assert msg.sender == self.liquidator, "clearing: not liquidator"
    assert fraction <= WAD, "clearing: bad fraction"
    f: int256 = convert(fraction, int256)
    # in memory, stored once at the end: the source keeps each word in place (f < 1:
    # |moved| < |size|) or is emptied (f = 1: every size moves); the target's words change
    # as `_with_size` would change them, each looked up once
    words: DynArray[uint256, MAX_OPTIONS] = self._load_options(source)
    held_words: DynArray[uint256, MAX_OPTIONS] = self._load_options(target)
    left: DynArray[uint256, MAX_OPTIONS] = words
    bought: DynArray[uint256, MAX_OPTIONS] = held_words
    for i: uint256 in range(len(words), bound=MAX_OPTIONS):
        word: uint256 = words[i]
        size: int256 = fixed._word_size(word)
        # |size| < 2**79 and f <= 1e18: the product fits; `//` truncates toward zero
        moved: int256 = size * f // IWAD
        if moved == 0:
            continue
        left[i] = self._resized(word, size - moved)
        instrument_id: uint256 = word & (2**32 - 1)
        # the bidder's word for it (j = index + 1, 0 if none): most often at the same index
        # (a bidder that bought slices before holds them in the source's order), else among
        # the first len(held_words) words, where every word the bidder held stays (a removal
        # moves the last word in; a word appended here is another instrument, since the
        # source's are distinct): a fresh bidder searches nothing, so no loop is O(N²)
        j: uint256 = 0
        if i < len(bought) and bought[i] & (2**32 - 1) == instrument_id:
            j = i + 1
        else:
            for k: uint256 in range(min(len(held_words), len(bought)), bound=MAX_OPTIONS):
                if bought[k] & (2**32 - 1) == instrument_id:
                    j = k + 1
                    break
        held: int256 = 0
        if j == 0:
            assert len(bought) < (self.settings >> 128) & 255, "clearing: position cap"
            bought.append(self._resized(word, moved))
        else:
            held = fixed._word_size(bought[j - 1])
            if held + moved == 0:
                # netted out: the last word takes its place
                last: uint256 = bought.pop()
                if j <= len(bought):
                    bought[j - 1] = last
            else:
                bought[j - 1] = self._resized(word, held + moved)
        self._move_open_interest(instrument_id, size, held, moved)
    if fraction == WAD:
        left = []
    self._store_options(source, words, left)
    self._store_options(target, held_words, bought)
    source_cash: int256 = 0
    target_cash: int256 = 0
    mask: uint256 = self.masks[source]
    for u: uint256 in range(1, MAX_UNDERLYINGS + 1):
        if mask & (1 << u) == 0:
            continue
        position: PerpPosition = self._get_perp(source, u)
        moved: int256 = position.size * f // IWAD
        if moved == 0:
            continue
        cumulative: int256 = self._accrue_to_now(u)
        held: PerpPosition = self._get_perp(target, u)
        source_cash += self._settle_funding(source, u, position, cumulative)
        target_cash += self._settle_funding(target, u, held, cumulative)
        # the cost moves pro rata, rounded toward zero; f = 1 moves all of it
        cost: int256 = convert(math._mul_div(convert(abs(position.cost), uint256), convert(abs(moved), uint256), convert(abs(position.size), uint256), False), int256)
        if position.cost < 0:
            cost = -cost
        old_size: int256 = position.size
        old_held: int256 = held.size
        position.size -= moved
        position.cost -= cost
        position.funding = cumulative
        held.size += moved
        held.cost += cost
        held.funding = cumulative
        if held.size == 0:
            target_cash -= held.cost
            held.cost = 0
        self._put_perp(source, u, position)
        self._put_perp(target, u, held)
        self._move_open_interest(self.perp_of[u], old_size, old_held, moved)
    log PositionsTransferred(source=source, target=target, fraction=fraction)
    return source_cash, target_cash


# ---------------------------------------------------------------- views


@external
@view
@reentrant
def positions(account: uint256) -> IClearinghouse.Positions:
    """
    @notice Everything the margin engine values: the option positions as stored, two to a
            word (see `_half`; a zero half is no position), and perp lines with their perp's
            funding state.
    @dev `@reentrant`: the engine reads it while this contract calls the engine. The stored
         pairs are returned as they are: half the words a full word per option would take
         in every caller's memory (MAX_OPTIONS = 128).
    """
    pairs: DynArray[uint256, MAX_OPTIONS // 2] = []
    lines: DynArray[IClearinghouse.PerpLine, MAX_UNDERLYINGS] = []
    settings: uint256 = self.settings
    mask: uint256 = self.masks[account]
    for p: uint256 in range(((mask >> 128) + 1) // 2, bound=MAX_OPTIONS // 2):
        pairs.append(self.option_pairs[account][p])
    for u: uint256 in range(1, MAX_UNDERLYINGS + 1):
        if mask & (1 << u) == 0:
            continue
        packed: PackedPerp = self.perps[account][u]
        lines.append(
            IClearinghouse.PerpLine(underlying=u, line=packed.line, funding=packed.funding, state=self.funding_words[u])
        )
    return IClearinghouse.Positions(
        options=pairs,
        perps=lines,
        funding_cap=(settings >> 64) & (2**64 - 1),
        funding_interval=settings & (2**32 - 1),
    )


@external
@view
@reentrant
def instrument(instrument_id: uint256) -> IClearinghouse.Instrument:
    """
    @notice An instrument's listing and open interest.
    @dev `@reentrant`: the engine reads it while this contract calls the engine.
    """
    return self.instruments[instrument_id]


@external
@view
def funding(underlying: uint256) -> Funding:
    """
    @notice Funding state of the underlying's perp: the cumulative index per long unit (WAD
            USD), the EMA premium (WAD fraction) and when the index was last accrued (s).
    """
    return self._get_funding(underlying)


@external
@view
def max_options() -> uint256:
    """
    @notice Most option positions an account may hold.
    """
    return (self.settings >> 128) & 255


@external
@view
def funding_interval() -> uint256:
    """
    @notice The interval (s) over which the capped EMA premium is paid once.
    """
    return self.settings & (2**32 - 1)


@external
@view
def ema_window() -> uint256:
    """
    @notice The window (s) over which the premium EMA moves toward a trade's premium.
    """
    return (self.settings >> 32) & (2**32 - 1)


@external
@view
def funding_cap() -> uint256:
    """
    @notice Most funding per interval (WAD fraction of the index price).
    """
    return (self.settings >> 64) & (2**64 - 1)


@external
@view
def operator_bands() -> (uint256, uint256):
    """
    @notice How far from the mark an operator's fill may be priced (WAD fractions): the
            perp band (of the index) and the option band (of the engine's mark, or of
            spot / 100 when the mark is lower).
    """
    bands: uint256 = self.bands
    return bands & (2**64 - 1), bands >> 64


@external
@view
def funding_notional() -> uint256:
    """
    @notice The fill notional at the index (WAD USD) that moves the premium EMA with its
            full time weight; a smaller fill moves it in proportion.
    """
    return self.settings >> 136


@external
@view
def option_size(account: uint256, instrument_id: uint256) -> int256:
    """
    @notice Signed size (WAD units) of an option position.
    """
    return self._size_in(self._load_options(account), instrument_id)


@external
@view
def perp_mask(account: uint256) -> uint256:
    """
    @notice Bit u set iff the account holds a perp on underlying u.
    """
    return self.masks[account] & (2**128 - 1)


@external
@view
def option_ids(account: uint256) -> DynArray[uint256, MAX_OPTIONS]:
    """
    @notice Instrument ids of the account's option positions.
    """
    ids: DynArray[uint256, MAX_OPTIONS] = []
    words: DynArray[uint256, MAX_OPTIONS] = self._load_options(account)
    for word: uint256 in words:
        ids.append(word & (2**32 - 1))
    return ids


@external
@view
def perp_position(account: uint256, underlying: uint256) -> PerpPosition:
    """
    @notice Signed size (WAD units), cost (WAD USD) and funding index at the last settlement
            (WAD USD per unit) of a perp position.
    """
    return self._get_perp(account, underlying)


# ---------------------------------------------------------------- owner


@external
def list_perp(underlying: uint256, oi_cap: uint256) -> uint256:
    """
    @notice Lists the perpetual of `underlying`. @return Its instrument id.
    """
    ownable._check_owner()
    self._check_underlying(underlying)
    assert self.perp_of[underlying] == 0, "clearing: perp listed"
    instrument_id: uint256 = self._list(PERP, underlying, 0, 0, oi_cap)
    self.perp_of[underlying] = instrument_id
    self._put_funding(underlying, Funding(cumulative=0, premium_ema=0, updated_at=block.timestamp))
    return instrument_id


@external
def list_option(underlying: uint256, is_call: bool, strike: uint256, expiry: uint256, oi_cap: uint256) -> uint256:
    """
    @notice Lists a European option. @param strike WAD USD. @param expiry Unix time (s),
            at most 5 years ahead. @return Its instrument id.
    """
    ownable._check_owner()
    self._check_underlying(underlying)
    assert strike != 0, "clearing: zero strike"
    assert expiry > block.timestamp and expiry <= block.timestamp + MAX_EXPIRY, "clearing: bad expiry"
    return self._list(CALL if is_call else PUT, underlying, strike, expiry, oi_cap)


@external
def set_oi_cap(instrument_id: uint256, oi_cap: uint256):
    """
    @notice Sets an instrument's open-interest cap (WAD units); lowering it below the open
            interest only stops it from growing.
    """
    ownable._check_owner()
    assert self.instruments[instrument_id].kind != 0, "clearing: unknown instrument"
    self.instruments[instrument_id].oi_cap = oi_cap
    log OiCapSet(instrument=instrument_id, oi_cap=oi_cap)


@external
def set_max_options(max_options: uint256):
    """
    @notice Most option positions per account (1..128).
    """
    ownable._check_owner()
    assert max_options != 0 and max_options <= MAX_OPTIONS, "clearing: position cap out of bounds"
    self.settings = (self.settings & ~(255 << 128)) | (max_options << 128)
    log MaxOptionsSet(max_options=max_options)


@external
def set_funding_params(interval: uint256, cap: uint256, ema_window: uint256):
    """
    @notice Funding interval (s, 1h..1d), cap per interval (WAD, <= 5%), EMA window (s,
            1 min..1 day).
    """
    ownable._check_owner()
    self._set_funding_params(interval, cap, ema_window)


@external
def set_operator_bands(perp_band: uint256, option_band: uint256):
    """
    @notice Operator bands (WAD fractions): perp <= 10% of the index, option <= 100% of
            the larger of the mark and spot / 100.
    """
    ownable._check_owner()
    self._set_operator_bands(perp_band, option_band)


@external
def set_funding_notional(notional: uint256):
    """
    @notice The fill notional (WAD USD, 100 .. 1e12 USD) that moves the premium EMA with
            its full time weight.
    """
    ownable._check_owner()
    self._set_funding_notional(notional)


@external
def set_engine(engine: IRiskEngine):
    ownable._check_owner()
    assert engine.address.is_contract, "clearing: engine not a contract"
    self.engine = engine
    log EngineSet(engine=engine.address)


@external
def set_liquidator(liquidator: address):
    ownable._check_owner()
    assert liquidator.is_contract, "clearing: liquidator not a contract"
    self.liquidator = liquidator
    log LiquidatorSet(liquidator=liquidator)


@external
def set_exchange(exchange: address):
    ownable._check_owner()
    assert exchange.is_contract, "clearing: exchange not a contract"
    self.exchange = exchange
    log ExchangeSet(exchange=exchange)


# ---------------------------------------------------------------- internals


@internal
def _check_trade(
    account: uint256,
    instrument_id: uint256,
    instrument: IClearinghouse.Instrument,
    old_size: int256,
    old_perp: PerpPosition,
    cash_delta: int256,
    paused: bool,
):
    """
    @dev After a trade the account must be above initial margin with new risk open, or the
         trade must only reduce its risk: a lower MM, no lower `equity - MM`, equity >= 0
         and no lower equity per unit of MM than before. The before-state is valued by
         writing the old position back for a moment (warm slots) and subtracting the
         trade's cash change from the vault's cash.
    @custom:security Without the last two conditions an account under MM could close its
         book to an accomplice at any price that kept `equity - MM`, ending at negative
         equity (MM' = 0 only needs E' >= E - MM < 0): the fund paid the deficit.
    """
    after: IRiskEngine.Margin = extcall self.engine.refresh_margin(account)
    if not paused and after.equity >= convert(after.initial, int256) and staticcall self.engine.new_risk_open():
        return
    new_perp: PerpPosition = empty(PerpPosition)
    # the option words after the trade, and as they were before it
    words: DynArray[uint256, MAX_OPTIONS] = []
    before_words: DynArray[uint256, MAX_OPTIONS] = []
    if instrument.kind == PERP:
        new_perp = self._get_perp(account, instrument.underlying)
        self._put_perp(account, instrument.underlying, old_perp)
    else:
        words = self._load_options(account)
        before_words = self._with_size(words, instrument_id, instrument.underlying, instrument.kind, old_size, False)
        self._store_options(account, words, before_words)
    # an option held before the trade has a current array already (refresh_margin above)
    before: IRiskEngine.Margin = staticcall self.engine.margin_adjusted(account, cash_delta)
    if instrument.kind == PERP:
        self._put_perp(account, instrument.underlying, new_perp)
    else:
        self._store_options(account, before_words, words)
    # the exception: MM falls, health (equity − MM) does not, equity stays >= 0, and equity
    # per unit of MM does not fall (E'·MM >= E·MM'); below MM the last binds, so a trade
    # can hand out at most the equity that backed the risk it removes (SPECIFICATION.md)
    after_mm: int256 = convert(after.maintenance, int256)
    before_mm: int256 = convert(before.maintenance, int256)
    if (
        after_mm < before_mm
        and after.equity - after_mm >= before.equity - before_mm
        and after.equity >= 0
        and after.equity * before_mm >= before.equity * after_mm
    ):
        return
    assert not paused, "clearing: paused"
    # surfaces the oracle's reason when new risk is closed
    open: bool = staticcall self.engine.check_new_risk()
    raise "clearing: insufficient margin"


@internal
def _check_operator_price(instrument_id: uint256, instrument: IClearinghouse.Instrument, price: uint256):
    """
    @dev A fill made by an operator for an account is priced within the band of the mark:
         a perp's within `perp_band · index` of the index, an option's within
         `option_band · max(mark, spot / 100)` of the engine's mark, its current-epoch
         value per unit `(q_0 << shift) · quantum` (stored first if stale).
    @custom:security An operator may trade, never take: without the band it signed for
         the account an order buying a worthless option at any price, filled it from its
         own account and withdrew the premium. Now each fill can cost the account at most
         the band times its size (plus fees).
    """
    engine: address = self.engine.address
    spot: uint256 = staticcall ORACLE.price(staticcall self.engine.spot_key(instrument.underlying))
    bands: uint256 = self.bands
    mark: uint256 = spot
    allowed: uint256 = spot * (bands & (2**64 - 1)) // WAD
    if instrument.kind != PERP:
        stored: uint256 = extcall IMarks(engine).refresh([instrument_id])
        epoch: uint256 = 0
        lane_shift: uint256 = 0
        lanes: DynArray[uint256, 32] = []
        unsettled: bool = False
        epoch, lane_shift, lanes, unsettled = staticcall IMarks(engine).risk_array(instrument_id)
        mark = (lanes[0] << lane_shift) * (staticcall IMarks(engine).underlyings(instrument.underlying)).quantum
        allowed = max(mark, spot // OPTION_BAND_FLOOR) * (bands >> 64) // WAD
    if price > mark:
        assert price - mark <= allowed, "clearing: operator price out of band"
    else:
        assert mark - price <= allowed, "clearing: operator price out of band"


@internal
def _trade_perp(account: uint256, u: uint256, size: int256, price: uint256, cumulative: int256) -> int256:
    """
    @dev Settles the position's funding, adds the trade and realizes the cost once flat.
    @return The cash change (WAD).
    """
    position: PerpPosition = self._get_perp(account, u)
    cash: int256 = self._settle_funding(account, u, position, cumulative)
    position.funding = cumulative
    position.size += size
    position.cost += fixed._ceil_div(size * convert(price, int256), IWAD)
    if position.size == 0:
        cash -= position.cost
        position.cost = 0
    self._put_perp(account, u, position)
    return cash


@internal
def _settle_funding(account: uint256, u: uint256, position: PerpPosition, cumulative: int256) -> int256:
    """
    @dev The funding `position` owes up to `cumulative`, rounded against the account.
    """
    cash: int256 = fixed._floor_div(-position.size * (cumulative - position.funding), IWAD)
    if cash != 0:
        log FundingSettled(account=account, underlying=u, amount=cash)
    return cash


@internal
def _move_open_interest(instrument_id: uint256, size: int256, held: int256, moved: int256):
    """
    @dev Open interest after `moved` units went from a position of `size` to one of `held`;
         untouched (no storage read) when the long units are the same before and after, as
         when a bidder without a position buys a slice.
    """
    added: uint256 = self._long(size - moved) + self._long(held + moved)
    removed: uint256 = self._long(size) + self._long(held)
    if added != removed:
        self.instruments[instrument_id].open_interest = self.instruments[instrument_id].open_interest + added - removed


@internal
def _accrue_to_now(u: uint256) -> int256:
    """
    @dev Accrues the perp's funding to now at its current EMA (no trade, so the EMA does
         not move) and returns the cumulative index.
    """
    spot: uint256 = 0
    state: Funding = empty(Funding)
    cumulative: int256 = 0
    spot, state, cumulative = self._funding_now(u)
    self._put_funding(u, Funding(cumulative=cumulative, premium_ema=state.premium_ema, updated_at=block.timestamp))
    return cumulative


@internal
@view
def _funding_now(u: uint256) -> (uint256, Funding, int256):
    """
    @dev The index price, the stored funding state and the cumulative index accrued to now.
    """
    spot: uint256 = staticcall ORACLE.price(staticcall self.engine.spot_key(u))
    state: Funding = self._get_funding(u)
    settings: uint256 = self.settings
    cumulative: int256 = fixed._funding_now(
        state.cumulative,
        state.premium_ema,
        state.updated_at,
        spot,
        (settings >> 64) & (2**64 - 1),
        settings & (2**32 - 1),
        block.timestamp,
    )
    return spot, state, cumulative


@internal
@view
def _get_perp(account: uint256, u: uint256) -> PerpPosition:
    packed: PackedPerp = self.perps[account][u]
    position: PerpPosition = PerpPosition(size=0, cost=0, funding=packed.funding)
    position.size, position.cost = fixed._perp_line(packed.line)
    return position


@internal
def _put_perp(account: uint256, u: uint256, position: PerpPosition):
    assert abs(position.size) < 2**127 and abs(position.cost) < 2**127, "clearing: position out of range"
    line: uint256 = (convert(convert(position.cost, bytes32), uint256) << 128) | (
        convert(convert(position.size, bytes32), uint256) & (2**128 - 1)
    )
    self.perps[account][u] = PackedPerp(line=line, funding=position.funding)
    if position.size == 0:
        self.masks[account] &= ~(1 << u)
    else:
        self.masks[account] |= 1 << u


@internal
@view
def _get_funding(u: uint256) -> Funding:
    """
    @dev Unpacks cumulative (int128, bits 0..127), premium_ema (int80, 128..207) and
         updated_at (uint48, 208..255).
    """
    state: Funding = empty(Funding)
    state.cumulative, state.premium_ema, state.updated_at = fixed._funding_state(self.funding_words[u])
    return state


@internal
def _put_funding(u: uint256, state: Funding):
    assert abs(state.cumulative) < 2**127, "clearing: funding out of range"
    self.funding_words[u] = (
        (convert(convert(state.cumulative, bytes32), uint256) & (2**128 - 1))
        | ((convert(convert(state.premium_ema, bytes32), uint256) & (2**80 - 1)) << 128)
        | (state.updated_at << 208)
    )


@internal
def _accrue_funding(u: uint256, price: uint256, size: int256) -> int256:
    """
    @dev Accrues the perp's funding to now at the old EMA, then moves the EMA toward this
         trade's premium over the index by min(dt, window) / window times
         min(n, N) / N, n = |size|·index the fill's notional and N `funding_notional`.
    @return The cumulative funding index now (WAD USD per unit).
    @custom:security Weighting by time alone let one fill of 1 wei, after a quiet window,
         set the EMA to its +100% clamp and hold funding at its cap for hours. Now a fill
         of notional n < N moves the EMA by at most (n / N)·|premium − ema| <= 2·n / N,
         and only the first fill of a block moves it at all (dt = 0 after it). The
         notional is taken at the index, so an off-market price cannot inflate it.
    """
    spot: uint256 = 0
    state: Funding = empty(Funding)
    cumulative: int256 = 0
    spot, state, cumulative = self._funding_now(u)
    settings: uint256 = self.settings
    window: int256 = convert((settings >> 32) & (2**32 - 1), int256)
    dt: int256 = min(convert(block.timestamp - state.updated_at, int256), window)
    # |size| < 2**127 and spot <= the feed's bound (< 2**128): the product fits
    reference: uint256 = settings >> 136
    notional: int256 = convert(min(convert(abs(size), uint256) * spot // WAD, reference), int256)
    # a trade's premium counts at most +100% (it is never below -100%): the EMA fits its
    # 80 bits
    premium: int256 = min(fixed._floor_div((convert(price, int256) - convert(spot, int256)) * IWAD, convert(spot, int256)), IWAD)
    # |premium − ema| <= 2e18 < 2**61, dt <= 86,400 < 2**17, notional <= 1e30 < 2**100:
    # the product is below 2**178
    ema: int256 = state.premium_ema + fixed._floor_div(
        (premium - state.premium_ema) * dt * notional, window * convert(reference, int256)
    )
    self._put_funding(u, Funding(cumulative=cumulative, premium_ema=ema, updated_at=block.timestamp))
    return cumulative


@internal
@pure
def _resized(word: uint256, size: int256) -> uint256:
    """
    @dev `word` with its size replaced (see lib/fixed.vy `_word`).
    """
    return (word & (2**128 - 1)) | (convert(convert(size, bytes32), uint256) << 128)


@internal
@pure
def _size_in(words: DynArray[uint256, MAX_OPTIONS], instrument_id: uint256) -> int256:
    """
    @dev The size of `instrument_id` among an account's words, 0 if it holds none.
    """
    for word: uint256 in words:
        if word & (2**32 - 1) == instrument_id:
            return fixed._word_size(word)
    return 0


@internal
@view
def _with_size(
    words: DynArray[uint256, MAX_OPTIONS], instrument_id: uint256, u: uint256, kind: uint256, size: int256, capped: bool
) -> DynArray[uint256, MAX_OPTIONS]:
    """
    @dev `words` with a position's size set: its word appended, updated, or removed (the
         last word takes its place). With `capped`, reverts "clearing: position cap" for a
         new position beyond `max_options` (not when a check puts back a position the
         account held before, which the cap may have been lowered below since).
    """
    slot: uint256 = 0
    for i: uint256 in range(len(words), bound=MAX_OPTIONS):
        if words[i] & (2**32 - 1) == instrument_id:
            slot = i + 1
            break
    result: DynArray[uint256, MAX_OPTIONS] = words
    if size == 0:
        if slot != 0:
            last: uint256 = result.pop()
            if slot <= len(result):
                result[slot - 1] = last
        return result
    word: uint256 = fixed._word(instrument_id, u, kind, size)
    if slot == 0:
        if capped:
            assert len(result) < (self.settings >> 128) & 255, "clearing: position cap"
        result.append(word)
    else:
        result[slot - 1] = word
    return result


@internal
@view
def _load_options(account: uint256) -> DynArray[uint256, MAX_OPTIONS]:
    """
    @dev The account's option positions as full words (lib/fixed.vy `_word`).
    """
    return self._unpack_options(account, self.masks[account] >> 128)


@internal
@view
def _unpack_options(account: uint256, count: uint256) -> DynArray[uint256, MAX_OPTIONS]:
    """
    @dev Reads `count` halves from `option_pairs` as full words (lib/fixed.vy `_pair_word`).
    """
    words: DynArray[uint256, MAX_OPTIONS] = []
    pair: uint256 = 0
    for i: uint256 in range(count, bound=MAX_OPTIONS):
        if i % 2 == 0:
            pair = self.option_pairs[account][i // 2]
        words.append(fixed._pair_word(pair, i % 2))
    return words


@internal
@pure
def _half(word: uint256) -> uint256:
    """
    @dev A full word as a stored half (0 stays 0). Reverts "clearing: position out of range"
         for a size beyond int80.
    """
    size: int256 = fixed._word_size(word)
    assert size >= -2**79 and size < 2**79, "clearing: position out of range"
    return (word & (2**48 - 1)) | ((convert(convert(size, bytes32), uint256) & (2**80 - 1)) << 48)


@internal
def _store_options(account: uint256, old: DynArray[uint256, MAX_OPTIONS], new: DynArray[uint256, MAX_OPTIONS]):
    """
    @dev Stores `new` over `old` (the words as stored): writes only the slots whose halves
         changed, and the count if it changed. A half past the count is zero, so a slot
         emptied by a removal is cleared. Reverts "clearing: position out of range" for a
         size beyond int80.
    """
    n_old: uint256 = len(old)
    n_new: uint256 = len(new)
    for p: uint256 in range((max(n_old, n_new) + 1) // 2, bound=MAX_OPTIONS // 2):
        i: uint256 = 2 * p
        low: uint256 = 0
        high: uint256 = 0
        if i < n_new:
            low = new[i]
        if i + 1 < n_new:
            high = new[i + 1]
        changed: bool = False
        if i < n_old:
            changed = old[i] != low
        else:
            changed = low != 0
        if not changed:
            if i + 1 < n_old:
                changed = old[i + 1] != high
            else:
                changed = high != 0
        if changed:
            self.option_pairs[account][p] = self._half(low) | (self._half(high) << 128)
    if len(old) != len(new):
        self.masks[account] = (self.masks[account] & (2**128 - 1)) | (len(new) << 128)


@internal
@pure
def _long(size: int256) -> uint256:
    return convert(max(size, 0), uint256)


@internal
@view
def _check_underlying(u: uint256):
    assert self.engine.address != empty(address), "clearing: no engine"
    assert u != 0 and u <= staticcall self.engine.underlying_count(), "clearing: unknown underlying"


@internal
def _list(kind: uint256, u: uint256, strike: uint256, expiry: uint256, oi_cap: uint256) -> uint256:
    instrument_id: uint256 = self.instrument_count + 1
    assert instrument_id < 2**32, "clearing: too many instruments"
    self.instrument_count = instrument_id
    self.instruments[instrument_id] = IClearinghouse.Instrument(
        kind=kind, underlying=u, strike=strike, expiry=expiry, oi_cap=oi_cap, open_interest=0, settlement_price=0
    )
    log InstrumentListed(instrument=instrument_id, underlying=u, kind=kind, strike=strike, expiry=expiry, oi_cap=oi_cap)
    return instrument_id


@internal
def _set_operator_bands(perp_band: uint256, option_band: uint256):
    assert perp_band <= MAX_PERP_BAND and option_band <= MAX_OPTION_BAND, "clearing: band out of bounds"
    self.bands = perp_band | (option_band << 64)
    log OperatorBandsSet(perp_band=perp_band, option_band=option_band)


@internal
def _set_funding_notional(notional: uint256):
    assert notional >= MIN_FUNDING_NOTIONAL and notional <= MAX_FUNDING_NOTIONAL, "clearing: funding notional out of bounds"
    self.settings = (self.settings & (2**136 - 1)) | (notional << 136)
    log FundingNotionalSet(notional=notional)


@internal
def _set_funding_params(interval: uint256, cap: uint256, ema_window: uint256):
    assert interval >= MIN_FUNDING_INTERVAL and interval <= MAX_FUNDING_INTERVAL, "clearing: interval out of bounds"
    assert cap <= MAX_FUNDING_CAP, "clearing: funding cap out of bounds"
    assert ema_window >= MIN_EMA_WINDOW and ema_window <= MAX_EMA_WINDOW, "clearing: ema window out of bounds"
    self.settings = (self.settings & ~(2**128 - 1)) | interval | (ema_window << 32) | (cap << 64)
    log FundingParamsSet(interval=interval, cap=cap, ema_window=ema_window)
