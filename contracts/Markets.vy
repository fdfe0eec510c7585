# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title crossmargin markets
@notice The instrument registry and the market parameters: lists the instruments (one
        perpetual per underlying, European calls and puts, dated futures), keeps their open interest and
        settlement prices, and holds the trading parameters (position cap, funding, operator
        bands). The clearinghouse keeps the positions and cash; it calls this contract once
        per fill (`on_trade`), once per settlement (`settle`) and once per liquidation slice
        (`move_open_interest`), and holds a copy of the parameters it reads on every trade
        and valuation (its settings word, pushed by each setter here).

        Layout of an instrument (two words and a price):
          terms  kind (bits 0..7) | underlying (8..15) | expiry (16..55, s) | strike (56..183,
                 WAD USD, 0 for a future); kind 0 = not listed, PERP (1), CALL (2), PUT (3),
                 FUTURE (4)
          oi     open interest (bits 0..127) | cap (128..255), both long WAD units
          settlement_prices  the price options and futures settle at (WAD USD), once stored
@custom:security All state-changing entry points hold the lock (`pragma nonreentrancy on`).
        The operator band reads the margin engine's mark (`refresh`, `risk_array`), and the
        engine reads `instrument` back while `on_trade` holds the lock: so `instrument` and
        `settlement_price` are `@reentrant` views.
"""

from snekmate.auth import ownable
from snekmate.auth import ownable_2step

from interfaces import IClearinghouse
from interfaces import IMarkets

initializes: ownable
initializes: ownable_2step[ownable := ownable]

exports: (
    ownable_2step.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
)

implements: IMarkets


interface IOracleRouter:
    def price(key: bytes32) -> uint256: view
    def settlement_price(key: bytes32, expiry: uint256, round_hint: uint80) -> uint256: view


# @dev What this contract reads of the margin engine: the listed underlyings and their spot
#      keys, and an option's current risk array (`refresh` stores it when stale) and its
#      underlying's quantum (in `Listed`), for the operator band.
interface IMarks:
    def underlying_count() -> uint256: view
    def spot_key(underlying: uint256) -> bytes32: view
    def refresh(instrument_ids: DynArray[uint256, 64]) -> uint256: nonpayable
    def risk_array(instrument_id: uint256) -> (uint256, uint256, DynArray[uint256, 32], bool): view
    def underlyings(underlying: uint256) -> Listed: view


# @dev What this contract calls on the clearinghouse: a new perp's funding state, a new
#      future's terms, and the copy of the settings word.
interface IClearing:
    def open_linear(underlying: uint256, instrument_id: uint256, expiry: uint256): nonpayable
    def set_settings(settings: uint256): nonpayable


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
    concentration_free: uint256
    concentration_depth: uint256


WAD: constant(uint256) = 10**18
# @dev Most option positions per account the position cap may allow, and its default (see
#      SPECIFICATION.md: at 64 any account can be liquidated in one transaction even when
#      every risk array is stale).
MAX_OPTIONS: constant(uint256) = 128
DEFAULT_MAX_OPTIONS: constant(uint256) = 64
# @dev Bound of `move_open_interest`: an account's options, perps and futures.
MAX_MOVES: constant(uint256) = 160
# @dev Instrument kinds.
PERP: constant(uint256) = 1
CALL: constant(uint256) = 2
PUT: constant(uint256) = 3
FUTURE: constant(uint256) = 4
# @dev Longest option or future listed (s).
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
# @dev Most position cap (whole USD, below 2**40), and one USD of cap in |size| · spot (WAD
#      units × WAD USD).
MAX_POSITION_CAP: constant(uint256) = 10**12
CAP_UNIT: constant(uint256) = 10**36
M40: constant(uint256) = 2**40 - 1
M128: constant(uint256) = 2**128 - 1


# @dev The clearinghouse holding the positions: the only caller of `on_trade`, `settle` and
#      `move_open_interest`.
CLEARING: public(immutable(address))
ORACLE: public(immutable(IOracleRouter))
# @dev The margin engine (listed underlyings, spot keys, marks); set once.
engine: public(IMarks)
# @dev Instruments by id (1..instrument_count): the terms and open-interest words (see the
#      title) and the settlement price of an option or future once stored (WAD USD, else 0).
terms: HashMap[uint256, uint256]
interest: HashMap[uint256, uint256]
settlement_price: public(reentrant(HashMap[uint256, uint256]))
instrument_count: public(uint256)
# @dev Perp instrument id of each underlying (0 while none is listed).
perp_of: public(HashMap[uint256, uint256])
# @dev The clearinghouse's settings word, whose copy it reads on every trade and valuation:
#      funding_interval (bits 0..31, s), ema_window (32..63, s), funding_cap (64..127, WAD
#      per interval), max_options (128..135), funding_notional (136..255, WAD USD).
settings: public(uint256)
# @dev How far from the mark an operator's fill may be priced (WAD fractions): perp band
#      (bits 0..63, of the index) | option band (64..127, of the engine's mark or spot / 100,
#      the larger).
bands: uint256
# @dev Position cap per underlying: cap (bits 0..39, whole USD, 0 = none) | the underlying's
#      spot oracle key (bits 128..255: the engine's, at most 16 bytes and never changed), so
#      a fill reads both in one slot. No fill grows a position in one of its instruments to
#      a notional |size| · spot above the cap (`on_trade`); liquidation transfers
#      (`move_open_interest`) are exempt. `position_cap(u)` reads the cap.
caps: HashMap[uint256, uint256]


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


event SettlementPriceStored:
    instrument: indexed(uint256)
    price: uint256


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


event PositionCapSet:
    underlying: indexed(uint256)
    usd: uint256


@deploy
def __init__(clearing: address, oracle: IOracleRouter):
    """
    @dev Defaults: 64 options per account, funding paid over 8 hours, capped at 0.5% per
         interval, EMA over 1 hour, fills of 100,000 USD move it with full weight, operator
         bands 1% (perps) and 10% (options). The clearinghouse copies them when it is wired
         to this contract (`Clearinghouse.set_markets`).
    """
    ownable.__init__()
    ownable_2step.__init__()
    CLEARING = clearing
    ORACLE = oracle
    self.settings = DEFAULT_MAX_OPTIONS << 128
    log MaxOptionsSet(max_options=DEFAULT_MAX_OPTIONS)
    self._set_funding_notional(DEFAULT_FUNDING_NOTIONAL)
    self._set_operator_bands(DEFAULT_PERP_BAND, DEFAULT_OPTION_BAND)
    self._set_funding_params(8 * 3_600, 5 * 10**15, 3_600)


# ---------------------------------------------------------------- clearinghouse


@external
def on_trade(instrument_id: uint256, size: int256, maker_old: int256, taker_old: int256, operator_price: uint256) -> uint256:
    """
    @notice A fill of `size` (WAD units, signed, the maker's side) between positions of
            `maker_old` and `taker_old`: checks the instrument is listed and, for an option
            or a future, not expired; applies the change of open interest, which may always fall and
            rises only up to the cap; that neither position grows (in |size|) to a notional
            |size| · spot above its underlying's position cap (spot read only then); and,
            when an operator made the fill (`operator_price` is its price, else 0), checks
            the price is within the operator band.
    @return The instrument's terms word (see the title).
    @dev Only the clearinghouse. |size|, |maker_old|, |taker_old| < 2**127 (the
         clearinghouse's position bounds), so the new sizes fit.
    """
    assert msg.sender == CLEARING, "markets: not clearinghouse"
    terms: uint256 = self.terms[instrument_id]
    kind: uint256 = terms & 255
    assert kind != 0, "markets: unknown instrument"
    if kind != PERP:
        assert block.timestamp < (terms >> 16) & (2**40 - 1), "markets: instrument expired"
    # open interest counts long units
    word: uint256 = self.interest[instrument_id]
    old: uint256 = word & M128
    oi: uint256 = old + self._long(maker_old + size) + self._long(taker_old - size)
    oi -= self._long(maker_old) + self._long(taker_old)
    if oi != old:
        assert oi <= word >> 128 or oi < old, "markets: open interest cap"
        self.interest[instrument_id] = (word & ~M128) | oi
    # position cap: a position that grows is checked at its new |size| (the larger one);
    # a reduction always passes. |new size| < 2**128, so the product overflows (and the
    # fill reverts, never passes) only at a spot above 2**128 WAD
    grown: uint256 = max(self._grown(maker_old, maker_old + size), self._grown(taker_old, taker_old - size))
    if grown != 0:
        cap: uint256 = self.caps[(terms >> 8) & 255]
        if cap & M40 != 0:
            spot: uint256 = staticcall ORACLE.price(convert(cap & ~M128, bytes32))
            assert grown * spot <= (cap & M40) * CAP_UNIT, "markets: position notional cap"
    if operator_price != 0:
        self._check_operator_price(instrument_id, terms, operator_price)
    return terms


@external
def settle(instrument_id: uint256, round_hint: uint80, size: int256) -> (uint256, uint256):
    """
    @notice Settlement of a position of `size` (WAD units, signed) in an expired option or
            future: the settlement price is the first oracle round at or after expiry
            (`round_hint`, see the oracle router), fetched and stored by the first
            settlement; a long position leaves the open interest.
    @return The terms word and the settlement price (WAD USD; 0 when `size` is 0, which
            the clearinghouse rejects).
    @dev Only the clearinghouse.
    """
    assert msg.sender == CLEARING, "markets: not clearinghouse"
    terms: uint256 = self.terms[instrument_id]
    kind: uint256 = terms & 255
    assert kind != PERP and kind != 0, "markets: not dated"
    expiry: uint256 = (terms >> 16) & (2**40 - 1)
    assert block.timestamp >= expiry, "markets: not expired"
    if size == 0:
        return terms, 0
    price: uint256 = self.settlement_price[instrument_id]
    if price == 0:
        price = staticcall ORACLE.settlement_price(staticcall self.engine.spot_key((terms >> 8) & 255), expiry, round_hint)
        self.settlement_price[instrument_id] = price
        log SettlementPriceStored(instrument=instrument_id, price=price)
    if size > 0:
        # the open interest counts this long (<= it): the low half does not borrow
        self.interest[instrument_id] -= convert(size, uint256)
    return terms, price


@external
def move_open_interest(moves: DynArray[uint256, MAX_MOVES]):
    """
    @notice Applies the changes of open interest of a liquidation slice: each word is an
            instrument id (bits 0..31) and the signed change of its long units (int224,
            bits 32..255). A slice only moves or nets positions, so open interest only
            falls and no cap applies (neither the open-interest cap nor the position cap:
            a bid is never blocked by a cap).
    @dev Only the clearinghouse.
    """
    assert msg.sender == CLEARING, "markets: not clearinghouse"
    for move: uint256 in moves:
        instrument_id: uint256 = move & (2**32 - 1)
        # an arithmetic shift restores the signed change; the open interest stays >= 0
        # (it counts the long units moved) and below the cap half (it only falls)
        delta: int256 = convert(convert(move, bytes32), int256) >> 32
        word: uint256 = self.interest[instrument_id]
        oi: uint256 = convert(convert(word & M128, int256) + delta, uint256)
        self.interest[instrument_id] = (word & ~M128) | oi


# ---------------------------------------------------------------- views


@external
@view
@reentrant
def open_interest(instrument_id: uint256) -> uint256:
    """
    @notice Long units open in an instrument (WAD): as many as its short units.
    @dev `@reentrant`: deleveraging reads it while the clearinghouse holds the lock.
    """
    return self.interest[instrument_id] & M128


@external
@view
@reentrant
def instrument(instrument_id: uint256) -> IClearinghouse.Instrument:
    """
    @notice An instrument's listing and open interest (unpacked).
    @dev `@reentrant`: the margin engine reads it while `on_trade` holds the lock.
    """
    terms: uint256 = self.terms[instrument_id]
    word: uint256 = self.interest[instrument_id]
    return IClearinghouse.Instrument(
        kind=terms & 255,
        underlying=(terms >> 8) & 255,
        strike=terms >> 56,
        expiry=(terms >> 16) & (2**40 - 1),
        oi_cap=word >> 128,
        open_interest=word & M128,
        settlement_price=self.settlement_price[instrument_id],
    )


@external
@view
def position_cap(underlying: uint256) -> uint256:
    """
    @notice The position cap of `underlying` (whole USD of notional |size| · spot, 0 = none).
    """
    return self.caps[underlying] & M40


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
def funding_notional() -> uint256:
    """
    @notice The fill notional at the index (WAD USD) that moves the premium EMA with its
            full time weight; a smaller fill moves it in proportion.
    """
    return self.settings >> 136


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


# ---------------------------------------------------------------- owner


@external
def list_perp(underlying: uint256, oi_cap: uint256) -> uint256:
    """
    @notice Lists the perpetual of `underlying` (its funding starts now). @param oi_cap
            Long WAD units (at most 2**128 - 1; more is stored as that). @return Its
            instrument id.
    """
    ownable._check_owner()
    self._check_underlying(underlying)
    assert self.perp_of[underlying] == 0, "markets: perp listed"
    instrument_id: uint256 = self._list(PERP, underlying, 0, 0, oi_cap)
    self.perp_of[underlying] = instrument_id
    extcall IClearing(CLEARING).open_linear(underlying, instrument_id, 0)
    return instrument_id


@external
def list_option(underlying: uint256, is_call: bool, strike: uint256, expiry: uint256, oi_cap: uint256) -> uint256:
    """
    @notice Lists a European option. @param strike WAD USD, below 2**128. @param expiry
            Unix time (s), at most 5 years ahead. @param oi_cap Long WAD units (at most
            2**128 - 1; more is stored as that). @return Its instrument id.
    """
    ownable._check_owner()
    self._check_underlying(underlying)
    assert strike != 0, "markets: zero strike"
    assert strike <= M128, "markets: strike out of range"
    assert expiry > block.timestamp and expiry <= block.timestamp + MAX_EXPIRY, "markets: bad expiry"
    return self._list(CALL if is_call else PUT, underlying, strike, expiry, oi_cap)


@external
def list_future(underlying: uint256, expiry: uint256, oi_cap: uint256) -> uint256:
    """
    @notice Lists a dated future on `underlying`, marked to its index and settled at the
            first index round at or after expiry. @param expiry Unix time (s), at most 5
            years ahead. @param oi_cap Long WAD units (at most 2**128 - 1; more is stored
            as that). @return Its instrument id.
    """
    ownable._check_owner()
    self._check_underlying(underlying)
    assert expiry > block.timestamp and expiry <= block.timestamp + MAX_EXPIRY, "markets: bad expiry"
    instrument_id: uint256 = self._list(FUTURE, underlying, 0, expiry, oi_cap)
    extcall IClearing(CLEARING).open_linear(underlying, instrument_id, expiry)
    return instrument_id


@external
def set_oi_cap(instrument_id: uint256, oi_cap: uint256):
    """
    @notice Sets an instrument's open-interest cap (long WAD units, at most 2**128 - 1; more
            is stored as that); lowering it below the open interest only stops it from
            growing.
    """
    ownable._check_owner()
    assert self.terms[instrument_id] != 0, "markets: unknown instrument"
    cap: uint256 = min(oi_cap, M128)
    self.interest[instrument_id] = (self.interest[instrument_id] & M128) | (cap << 128)
    log OiCapSet(instrument=instrument_id, oi_cap=cap)


@external
def set_max_options(max_options: uint256):
    """
    @notice Most option positions per account (1..128).
    """
    ownable._check_owner()
    assert max_options != 0 and max_options <= MAX_OPTIONS, "markets: position cap out of bounds"
    self.settings = (self.settings & ~(255 << 128)) | (max_options << 128)
    log MaxOptionsSet(max_options=max_options)
    self._push()


@external
def set_funding_params(interval: uint256, cap: uint256, ema_window: uint256):
    """
    @notice Funding interval (s, 1h..1d), cap per interval (WAD, <= 5%), EMA window (s,
            1 min..1 day).
    """
    ownable._check_owner()
    self._set_funding_params(interval, cap, ema_window)
    self._push()


@external
def set_funding_notional(notional: uint256):
    """
    @notice The fill notional (WAD USD, 100 .. 1e12 USD) that moves the premium EMA with
            its full time weight.
    """
    ownable._check_owner()
    self._set_funding_notional(notional)
    self._push()


@external
def set_operator_bands(perp_band: uint256, option_band: uint256):
    """
    @notice Operator bands (WAD fractions): perp <= 10% of the index, option <= 100% of
            the larger of the mark and spot / 100.
    """
    ownable._check_owner()
    self._set_operator_bands(perp_band, option_band)


@external
def set_position_cap(underlying: uint256, usd: uint256):
    """
    @notice Sets the position cap of `underlying` (whole USD, <= 1e12; 0 = none): no fill may
            grow a position in one of its instruments to a notional |size| · spot above it.
            Reductions and liquidation transfers are never capped.
    """
    ownable._check_owner()
    self._check_underlying(underlying)
    assert usd <= MAX_POSITION_CAP, "markets: position cap out of bounds"
    # the key has its low 128 bits clear (at most 16 bytes)
    self.caps[underlying] = convert(staticcall self.engine.spot_key(underlying), uint256) | usd
    log PositionCapSet(underlying=underlying, usd=usd)


@external
def set_engine(engine: IMarks):
    """
    @notice Sets the margin engine, once.
    """
    ownable._check_owner()
    assert self.engine.address == empty(address), "markets: engine set"
    assert engine.address.is_contract, "markets: engine not a contract"
    self.engine = engine
    log EngineSet(engine=engine.address)


# ---------------------------------------------------------------- internals


@internal
def _check_operator_price(instrument_id: uint256, terms: uint256, price: uint256):
    """
    @dev A fill made by an operator for an account is priced within the band of the mark:
         a perp's or a future's within `perp_band · index` of the index (a future is
         marked to the index), an option's within
         `option_band · max(mark, spot / 100)` of the engine's mark, its current-epoch
         value per unit `(q_0 << shift) · quantum` (stored first if stale).
    @custom:security An operator may trade, never take: without the band it signed for
         the account an order buying a worthless option at any price, filled it from its
         own account and withdrew the premium. Now each fill can cost the account at most
         the band times its size (plus fees).
    """
    engine: IMarks = self.engine
    u: uint256 = (terms >> 8) & 255
    spot: uint256 = staticcall ORACLE.price(staticcall engine.spot_key(u))
    bands: uint256 = self.bands
    mark: uint256 = spot
    allowed: uint256 = spot * (bands & (2**64 - 1)) // WAD
    if terms & 255 == CALL or terms & 255 == PUT:
        stored: uint256 = extcall engine.refresh([instrument_id])
        epoch: uint256 = 0
        lane_shift: uint256 = 0
        lanes: DynArray[uint256, 32] = []
        unsettled: bool = False
        epoch, lane_shift, lanes, unsettled = staticcall engine.risk_array(instrument_id)
        mark = (lanes[0] << lane_shift) * (staticcall engine.underlyings(u)).quantum
        allowed = max(mark, spot // OPTION_BAND_FLOOR) * (bands >> 64) // WAD
    if price > mark:
        assert price - mark <= allowed, "markets: operator price out of band"
    else:
        assert mark - price <= allowed, "markets: operator price out of band"


@internal
@pure
def _long(size: int256) -> uint256:
    return convert(max(size, 0), uint256)


@internal
@pure
def _grown(old: int256, new: int256) -> uint256:
    """
    @dev |new| if the position grows (|new| > |old|), else 0.
    """
    if abs(new) > abs(old):
        return convert(abs(new), uint256)
    return 0


@internal
@view
def _check_underlying(u: uint256):
    assert self.engine.address != empty(address), "markets: no engine"
    assert u != 0 and u <= staticcall self.engine.underlying_count(), "markets: unknown underlying"


@internal
def _list(kind: uint256, u: uint256, strike: uint256, expiry: uint256, oi_cap: uint256) -> uint256:
    instrument_id: uint256 = self.instrument_count + 1
    assert instrument_id < 2**32, "markets: too many instruments"
    cap: uint256 = min(oi_cap, M128)
    self.instrument_count = instrument_id
    # u <= the engine's bound (< 2**8), expiry < now + 5 y (< 2**40), strike <= M128
    self.terms[instrument_id] = kind | (u << 8) | (expiry << 16) | (strike << 56)
    self.interest[instrument_id] = cap << 128
    log InstrumentListed(instrument=instrument_id, underlying=u, kind=kind, strike=strike, expiry=expiry, oi_cap=cap)
    return instrument_id


@internal
def _push():
    """
    @dev Hands the clearinghouse its copy of the settings word.
    """
    extcall IClearing(CLEARING).set_settings(self.settings)


@internal
def _set_operator_bands(perp_band: uint256, option_band: uint256):
    assert perp_band <= MAX_PERP_BAND and option_band <= MAX_OPTION_BAND, "markets: band out of bounds"
    self.bands = perp_band | (option_band << 64)
    log OperatorBandsSet(perp_band=perp_band, option_band=option_band)


@internal
def _set_funding_notional(notional: uint256):
    assert notional >= MIN_FUNDING_NOTIONAL and notional <= MAX_FUNDING_NOTIONAL, "markets: funding notional out of bounds"
    self.settings = (self.settings & (2**136 - 1)) | (notional << 136)
    log FundingNotionalSet(notional=notional)


@internal
def _set_funding_params(interval: uint256, cap: uint256, ema_window: uint256):
    assert interval >= MIN_FUNDING_INTERVAL and interval <= MAX_FUNDING_INTERVAL, "markets: interval out of bounds"
    assert cap <= MAX_FUNDING_CAP, "markets: funding cap out of bounds"
    assert ema_window >= MIN_EMA_WINDOW and ema_window <= MAX_EMA_WINDOW, "markets: ema window out of bounds"
    self.settings = (self.settings & ~(2**128 - 1)) | interval | (ema_window << 32) | (cap << 64)
    log FundingParamsSet(interval=interval, cap=cap, ema_window=ema_window)
