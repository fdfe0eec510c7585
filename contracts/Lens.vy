# pragma version ~=0.4.3
"""
@title crossmargin lens
@notice Batch views for the SDK, the reference model, keepers and `ape run status`: one
        `eth_call` returns what would otherwise take one round trip per position.
        `snapshot(account)` loads every input of an account's valuation (the model's
        `snapshot`); `instruments`, `risk_arrays`, `array_epochs`, `holders_sizes` and
        `underlyings` read many instruments, accounts or underlyings at once;
        `preview(account, trades)` is the margin the account would have after a list of
        trades (the engine's `margin_with` on the positions they would leave).

        Bounds: an account's snapshot holds at most 128 options (the clearinghouse's bound)
        and 16 underlyings; a batch takes at most 64 ids (each id's reads cost a few
        thousand gas: 64 fit any node's `eth_call` gas cap many times over).
@custom:security View only: no owner, no storage, nothing calls it. It reads the deployed
        contracts through their public views and changes nothing, so it sits on no
        security path and can be redeployed at will (e.g. after a contract it reads is
        replaced). The clearinghouse's `positions` are passed through as their raw ABI
        encoding, so that a change of that struct needs no new lens: the SDK decodes them
        with the clearinghouse's own ABI.
"""

from snekmate.utils import math

from interfaces import IClearinghouse
from interfaces import IMarkets
from interfaces import IRiskEngine
from interfaces import IVault
from lib import fixed


interface IOracleRouter:
    def price_rounds(key_a: bytes32, key_b: bytes32, liquidation: bool) -> (uint256, uint80, uint256, uint80): view
    def price(key: bytes32) -> uint256: view


interface IClearing:
    def option_ids(account: uint256) -> DynArray[uint256, MAX_OPTIONS]: view
    def perp_mask(account: uint256) -> uint256: view
    def option_size(account: uint256, instrument_id: uint256) -> int256: view
    def positions(account: uint256) -> IClearinghouse.Positions: view
    def funding(underlying: uint256) -> (int256, int256, uint256): view
    def pending_charge(instrument_id: uint256) -> uint256: view


interface IEngine:
    def risk_array(instrument_id: uint256) -> (uint256, uint256, DynArray[uint256, MAX_SCENARIOS], bool): view
    def epoch(underlying: uint256) -> (uint80, uint80, uint256, uint256, uint256): view
    def grid(underlying: uint256) -> (DynArray[int256, MAX_SCENARIOS], DynArray[uint256, MAX_SCENARIOS], DynArray[uint256, MAX_SCENARIOS]): view
    def underlyings(underlying: uint256) -> Listing: view
    def underlying_ids(name: bytes32) -> uint256: view
    def im_factor() -> uint256: view
    def max_array_age() -> uint256: view
    def rate() -> uint256: view
    def spot_key(underlying: uint256) -> bytes32: view
    def margin(account: uint256) -> IRiskEngine.Margin: view
    def margin_with(account: uint256, positions: IClearinghouse.Positions, cash_delta: int256) -> IRiskEngine.Margin: view


interface IMarketsParams:
    def max_options() -> uint256: view


# @dev Option positions of one account (the clearinghouse's MAX_OPTIONS).
MAX_OPTIONS: constant(uint256) = 128
MAX_UNDERLYINGS: constant(uint256) = 16
MAX_SCENARIOS: constant(uint256) = 32
MAX_ASSETS: constant(uint256) = 16
# @dev Ids (instruments, accounts) per batch view.
MAX_BATCH: constant(uint256) = 64
# @dev Ids a batch view accepts in its calldata, so that a batch above MAX_BATCH reverts
#      with a reason instead of failing to decode.
MAX_INPUT: constant(uint256) = 256
# @dev Room for the raw ABI encoding of `Clearinghouse.positions` (bytes): today at most
#      135 words (4,320 bytes) at 128 options and 16 perps; the rest is room for new fields.
MAX_POSITIONS_BYTES: constant(uint256) = 16_384
# @dev Trades per `preview` (each costs one valuation of the account).
MAX_TRADES: constant(uint256) = 16
# @dev Instrument kinds (`Markets.vy`), and the clearinghouse's bound on future positions.
PERP: constant(uint256) = 1
CALL: constant(uint256) = 2
PUT: constant(uint256) = 3
FUTURE: constant(uint256) = 4
MAX_FUTURES: constant(uint256) = 16
WAD: constant(uint256) = 10**18
IWAD: constant(int256) = 10**18
M32: constant(uint256) = 2**32 - 1


# @dev The engine's unpacked listing of an underlying (`MarginEngine.underlyings`).
struct Listing:
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


# @dev The engine's stored epoch record of an underlying (`MarginEngine.epoch`).
struct EpochRecord:
    spot_round: uint80
    vol_round: uint80
    epoch: uint256
    # unix s
    opened_at: uint256
    # s after opening at which the epoch ends (2**24 - 1 for none)
    horizon: uint256


# @dev An underlying as a valuation reads it: listing, oracle reads (WAD, with their round
#      ids), grid (shocks and weights in millionths, vol moves) and epoch record.
struct Underlying:
    id: uint256
    listing: Listing
    spot: uint256
    spot_round: uint80
    vol: uint256
    vol_round: uint80
    shocks: DynArray[int256, MAX_SCENARIOS]
    moves: DynArray[uint256, MAX_SCENARIOS]
    weights: DynArray[uint256, MAX_SCENARIOS]
    epoch: EpochRecord


# @dev An option's stored risk array (`MarginEngine.risk_array`): epoch, shift, lanes (in
#      `quantum << shift` wei per unit) and the unsettled flag.
struct RiskArray:
    epoch: uint256
    shift: uint256
    lanes: DynArray[uint256, MAX_SCENARIOS]
    unsettled: bool


# @dev An option an account holds: its id, listing and stored risk array.
struct Option:
    id: uint256
    instrument: IClearinghouse.Instrument
    array: RiskArray


# @dev A vault collateral line with the price a valuation reads (WAD USD per unit) and the
#      id of the underlying it tracks (0 for none).
struct Collateral:
    asset: address
    balance: uint256
    price: uint256
    mm_haircut: uint256
    im_haircut: uint256
    underlying: uint256


# @dev Everything a valuation of one account reads, at one block.
struct Snapshot:
    # block.timestamp (unix s)
    timestamp: uint256
    # vault cash (WAD USD, signed) and non-zero collateral lines, in the vault's order
    cash: int256
    collateral: DynArray[Collateral, MAX_ASSETS]
    # the return data of `Clearinghouse.positions(account)`, ABI-encoded as it came
    positions: Bytes[MAX_POSITIONS_BYTES]
    # the options, in the clearinghouse's order (`option_ids`)
    options: DynArray[Option, MAX_OPTIONS]
    # every underlying the account touches (options, perps, collateral), ascending ids
    underlyings: DynArray[Underlying, MAX_UNDERLYINGS]
    # engine parameters: IM factor (WAD), oldest usable epoch (s), Black-Scholes rate (WAD/yr)
    im_factor: uint256
    max_array_age: uint256
    rate: uint256


# @dev A trade `preview` applies, from the previewed account's side.
struct Trade:
    instrument: uint256
    # signed size (WAD units): positive buys, negative sells
    size: int256
    # price (WAD USD per unit)
    price: uint256
    # fee the account pays for it (WAD USD; the exchange's rate times the notional)
    fee: uint256


# @dev What `preview` returns (WAD; signed where marked).
struct Preview:
    # the account's margin now, and after every trade
    before: IRiskEngine.Margin
    after: IRiskEngine.Margin
    # after: equity − MM (signed; below 0 the account is liquidatable) and equity − IM
    # (signed; a trade that adds risk needs it >= 0)
    health: int256
    initial_health: int256
    # the IM each trade adds: IM after trades 1..k minus IM after trades 1..k−1 (signed)
    legs: DynArray[int256, MAX_TRADES]
    # the cash the trades move (signed): premiums, realized perp and future PnL, perp
    # funding settled, fees, exit charges
    cash: int256


# @dev The contracts read; fixed for the lens's life (redeploy it to read others).
VAULT: public(immutable(IVault))
ORACLE: public(immutable(IOracleRouter))
CLEARING: public(immutable(IClearing))
MARKETS: public(immutable(IMarkets))
ENGINE: public(immutable(IEngine))


@deploy
def __init__(vault: IVault, oracle: IOracleRouter, clearing: IClearing, markets: IMarkets, engine: IEngine):
    """
    @param vault The vault (collateral, cash).
    @param oracle The oracle router.
    @param clearing The clearinghouse (positions).
    @param markets The markets contract (instruments).
    @param engine The margin engine (underlyings, grids, epochs, risk arrays).
    """
    VAULT = vault
    ORACLE = oracle
    CLEARING = clearing
    MARKETS = markets
    ENGINE = engine


# ---------------------------------------------------------------- views


@external
@view
def snapshot(account: uint256, liquidation: bool = False) -> Snapshot:
    """
    @notice Every input of `account`'s valuation at this block: vault cash and collateral
            lines with their prices, the clearinghouse's positions (raw ABI encoding), each
            option's listing and stored risk array, each touched underlying's listing,
            oracle reads, grid and epoch record, and the engine's parameters.
    @param account Account id (owner << 96 | subaccount).
    @param liquidation Read every feed as a liquidation's valuation does (the router's
           `price_rounds(..., liquidation=True)`: stale rounds used, answers clamped).
    @return The snapshot (amounts WAD, times unix s).
    """
    snap: Snapshot = empty(Snapshot)
    snap.timestamp = block.timestamp
    lines: DynArray[IVault.Collateral, MAX_ASSETS] = []
    snap.cash, lines = staticcall VAULT.account_state(account)
    touched: uint256 = staticcall CLEARING.perp_mask(account)
    for line: IVault.Collateral in lines:
        u: uint256 = staticcall ENGINE.underlying_ids(line.underlying)
        touched |= 1 << u
        snap.collateral.append(
            Collateral(
                asset=line.asset,
                balance=line.balance,
                price=(staticcall ORACLE.price_rounds(line.price_key, empty(bytes32), liquidation))[0],
                mm_haircut=line.mm_haircut,
                im_haircut=line.im_haircut,
                underlying=u,
            )
        )
    raw: Bytes[MAX_POSITIONS_BYTES] = raw_call(
        CLEARING.address,
        abi_encode(account, method_id=method_id("positions(uint256)")),
        max_outsize=MAX_POSITIONS_BYTES,
        is_static_call=True,
    )
    assert len(raw) < MAX_POSITIONS_BYTES, "lens: positions too long"
    snap.positions = raw
    for i: uint256 in staticcall CLEARING.option_ids(account):
        option: Option = Option(id=i, instrument=staticcall MARKETS.instrument(i), array=self._risk_array(i))
        touched |= 1 << option.instrument.underlying
        snap.options.append(option)
    for u: uint256 in range(1, MAX_UNDERLYINGS + 1):
        if touched & (1 << u) != 0:
            snap.underlyings.append(self._underlying(u, liquidation))
    snap.im_factor = staticcall ENGINE.im_factor()
    snap.max_array_age = staticcall ENGINE.max_array_age()
    snap.rate = staticcall ENGINE.rate()
    return snap


@external
@view
def instruments(ids: DynArray[uint256, MAX_INPUT]) -> DynArray[IClearinghouse.Instrument, MAX_BATCH]:
    """
    @notice `Markets.instrument` of each id, in order (kind 0 for an id not listed).
    @param ids At most 64 instrument ids.
    @return The listings and open interests (WAD, unix s).
    """
    self._check_batch(len(ids))
    out: DynArray[IClearinghouse.Instrument, MAX_BATCH] = []
    for i: uint256 in ids:
        out.append(staticcall MARKETS.instrument(i))
    return out


@external
@view
def risk_arrays(ids: DynArray[uint256, MAX_INPUT]) -> DynArray[RiskArray, MAX_BATCH]:
    """
    @notice `MarginEngine.risk_array` of each id, in order: epoch, shift, lanes (in
            `quantum << shift` wei per unit) and the unsettled flag.
    @param ids At most 64 option ids.
    """
    self._check_batch(len(ids))
    out: DynArray[RiskArray, MAX_BATCH] = []
    for i: uint256 in ids:
        out.append(self._risk_array(i))
    return out


@external
@view
def array_epochs(ids: DynArray[uint256, MAX_INPUT]) -> DynArray[uint256, MAX_BATCH]:
    """
    @notice The epoch of each id's stored risk array (0 for none), in order: what a
            refresh keeper compares with the current epochs.
    @param ids At most 64 option ids.
    """
    self._check_batch(len(ids))
    out: DynArray[uint256, MAX_BATCH] = []
    for i: uint256 in ids:
        out.append((staticcall ENGINE.risk_array(i))[0])
    return out


@external
@view
def holders_sizes(instrument_id: uint256, accounts: DynArray[uint256, MAX_INPUT]) -> DynArray[int256, MAX_BATCH]:
    """
    @notice The signed size (WAD units) of `instrument_id` each account holds, in order (0
            for none): which candidate holders still need settling.
    @param instrument_id An option id.
    @param accounts At most 64 account ids.
    """
    self._check_batch(len(accounts))
    out: DynArray[int256, MAX_BATCH] = []
    for a: uint256 in accounts:
        out.append(staticcall CLEARING.option_size(a, instrument_id))
    return out


@external
@view
def underlyings(ids: DynArray[uint256, MAX_INPUT], liquidation: bool = False) -> DynArray[Underlying, MAX_UNDERLYINGS]:
    """
    @notice Each underlying's listing, oracle reads, grid and epoch record, in order.
    @param ids At most 16 underlying ids.
    @param liquidation Read the feeds as a liquidation's valuation does (see `snapshot`).
    """
    assert len(ids) <= MAX_UNDERLYINGS, "lens: too many underlyings"
    out: DynArray[Underlying, MAX_UNDERLYINGS] = []
    for u: uint256 in ids:
        out.append(self._underlying(u, liquidation))
    return out


@external
@view
def preview(account: uint256, trades: DynArray[Trade, MAX_INPUT]) -> Preview:
    """
    @notice The margin `account` would have after `trades`, in order, as the clearinghouse
            would apply them now (no state changes): each trade moves the account's
            position as `Clearinghouse.trade` does (option words two to a word; perp and
            future cost += ceil(size·price), realized when flat, perp funding settled first;
            option premium paid rounded up, received rounded down; `fee` paid; a perp or
            future leaving a side with a pending charge pays its exit charge), then the
            engine values the positions that leave (`MarginEngine.margin_with`). Equal to
            the engine's `margin` after the same fills in the same block.
    @param account Account id (owner << 96 | subaccount).
    @param trades At most 16: instrument id, signed size from the account's side (WAD
           units, > 0 buys), price (WAD USD per unit, > 0) and the fee paid (WAD USD).
    @return The margin now and after, health (equity − MM) and equity − IM after, the IM
            each trade adds and the cash they move (WAD).
    @dev Risk arrays: the engine computes a stale array in memory, exactly as the check
         after the fill would store it, so options not held yet are valued as they would
         be. Reverts as the fill would for an unknown or expired instrument, a zero size or
         price, the option position cap and a position out of range (with the lens's own
         reasons); the fill's other checks (open interest and position notional caps,
         operator bands, auctions, pauses) are not previewed.
    """
    assert len(trades) <= MAX_TRADES, "lens: too many trades"
    result: Preview = empty(Preview)
    result.before = staticcall ENGINE.margin(account)
    positions: IClearinghouse.Positions = staticcall CLEARING.positions(account)
    # the option positions as full words (`fixed._word`), stored again as pairs per trade
    words: DynArray[uint256, MAX_OPTIONS] = []
    for i: uint256 in range(2 * len(positions.options), bound=MAX_OPTIONS):
        word: uint256 = fixed._pair_word(positions.options[i // 2], i % 2)
        if word == 0:
            break
        words.append(word)
    max_options: uint256 = staticcall IMarketsParams(MARKETS.address).max_options()
    initial: uint256 = result.before.initial
    for trade: Trade in trades:
        assert trade.size != 0, "lens: zero size"
        assert trade.price != 0, "lens: zero price"
        assert abs(trade.size) < 2**127, "lens: size out of range"
        instrument: IClearinghouse.Instrument = staticcall MARKETS.instrument(trade.instrument)
        assert instrument.kind != 0, "lens: unknown instrument"
        if instrument.kind != PERP:
            assert block.timestamp < instrument.expiry, "lens: instrument expired"
        result.cash -= convert(trade.fee, int256)
        cash: int256 = 0
        if instrument.kind == PERP:
            positions.perps, cash = self._trade_perp(
                positions.perps, positions.funding_cap, positions.funding_interval, instrument.underlying, trade
            )
            result.cash += cash
        elif instrument.kind == FUTURE:
            positions.futures, cash = self._trade_future(positions.futures, instrument, trade.instrument, trade)
            result.cash += cash
        else:
            words = self._with_size(words, trade.instrument, instrument, trade.size, max_options)
            # the buyer pays the premium rounded up, the seller receives it rounded down
            units: uint256 = convert(abs(trade.size), uint256)
            if trade.size > 0:
                result.cash -= convert(math._mul_div(units, trade.price, WAD, True), int256)
            else:
                result.cash += convert(math._mul_div(units, trade.price, WAD, False), int256)
            positions.options = self._pairs(words)
        result.after = staticcall ENGINE.margin_with(account, positions, result.cash)
        result.legs.append(convert(result.after.initial, int256) - convert(initial, int256))
        initial = result.after.initial
    if len(trades) == 0:
        result.after = result.before
    result.health = result.after.equity - convert(result.after.maintenance, int256)
    result.initial_health = result.after.equity - convert(result.after.initial, int256)
    return result


# ---------------------------------------------------------------- internals


@internal
@view
def _check_batch(n: uint256):
    assert n <= MAX_BATCH, "lens: batch too long"


@internal
@view
def _risk_array(instrument_id: uint256) -> RiskArray:
    array: RiskArray = empty(RiskArray)
    array.epoch, array.shift, array.lanes, array.unsettled = staticcall ENGINE.risk_array(instrument_id)
    return array


@internal
@view
def _underlying(u: uint256, liquidation: bool) -> Underlying:
    out: Underlying = empty(Underlying)
    out.id = u
    out.listing = staticcall ENGINE.underlyings(u)
    out.spot, out.spot_round, out.vol, out.vol_round = staticcall ORACLE.price_rounds(
        out.listing.spot_key, out.listing.vol_key, liquidation
    )
    out.shocks, out.moves, out.weights = staticcall ENGINE.grid(u)
    record: EpochRecord = empty(EpochRecord)
    record.spot_round, record.vol_round, record.epoch, record.opened_at, record.horizon = staticcall ENGINE.epoch(u)
    out.epoch = record
    return out



@internal
@view
def _trade_perp(
    perps: DynArray[IClearinghouse.PerpLine, MAX_UNDERLYINGS], cap: uint256, interval: uint256, u: uint256, trade: Trade
) -> (DynArray[IClearinghouse.PerpLine, MAX_UNDERLYINGS], int256):
    """
    @dev `Clearinghouse._trade_linear` on the perp line of `u` among `perps` (a new one if
         there is none): funding settled to the index accrued to now, then cost +=
         ceil(size·price), realized when flat (the line then leaves the list, as the
         clearinghouse lists a perp only while it has a size). A line carries its perp's
         funding state as stored: accrued to now it gives the index the trade settled to,
         whatever the trade does to the premium EMA (which moves the index only later).
         Leaving a side with a pending charge pays its exit charge (`_exit_charge`).
    @return The lines after the trade and its cash change (WAD).
    """
    lines: DynArray[IClearinghouse.PerpLine, MAX_UNDERLYINGS] = perps
    slot: uint256 = 0
    line: IClearinghouse.PerpLine = IClearinghouse.PerpLine(underlying=u, line=0, funding=0, state=0)
    for i: uint256 in range(len(lines), bound=MAX_UNDERLYINGS):
        if lines[i].underlying == u:
            slot = i + 1
            line = lines[i]
            break
    cumulative: int256 = 0
    premium: int256 = 0
    updated_at: uint256 = 0
    if slot == 0:
        # the funding state as `Clearinghouse._put_funding` packs it
        cumulative, premium, updated_at = staticcall CLEARING.funding(u)
        line.state = (
            (convert(convert(cumulative, bytes32), uint256) & (2**128 - 1))
            | ((convert(convert(premium, bytes32), uint256) & (2**80 - 1)) << 128)
            | (updated_at << 208)
        )
    else:
        cumulative, premium, updated_at = fixed._funding_state(line.state)
    index: int256 = fixed._funding_now(
        cumulative, premium, updated_at, staticcall ORACLE.price(staticcall ENGINE.spot_key(u)), cap, interval, block.timestamp
    )
    size: int256 = 0
    cost: int256 = 0
    size, cost = fixed._perp_line(line.line)
    cash: int256 = fixed._floor_div(-size * (index - line.funding), IWAD)
    cash -= self._exit_charge(trade, size)
    line.funding = index
    size += trade.size
    cost += fixed._ceil_div(trade.size * convert(trade.price, int256), IWAD)
    if size == 0:
        cash -= cost
        cost = 0
    assert abs(size) < 2**127 and abs(cost) < 2**127, "lens: position out of range"
    line.line = (convert(convert(cost, bytes32), uint256) << 128) | (convert(convert(size, bytes32), uint256) & (2**128 - 1))
    if size == 0:
        if slot != 0:
            last: IClearinghouse.PerpLine = lines.pop()
            if slot <= len(lines):
                lines[slot - 1] = last
    elif slot == 0:
        lines.append(line)
    else:
        lines[slot - 1] = line
    return lines, cash


@internal
@view
def _exit_charge(trade: Trade, old: int256) -> int256:
    """
    @dev What `trade` pays on a perp or future position of `old` for leaving a side that an
         open insolvent auction marked (`Clearinghouse.pending_charge`, lib/fixed.vy
         `_exit_charge`); 0 when none is pending.
    """
    pending: uint256 = staticcall CLEARING.pending_charge(trade.instrument)
    if pending == 0:
        return 0
    return convert(fixed._exit_charge(old, trade.size, pending), int256)


@internal
@view
def _trade_future(
    futures: DynArray[uint256, MAX_FUTURES], instrument: IClearinghouse.Instrument, instrument_id: uint256, trade: Trade
) -> (DynArray[uint256, MAX_FUTURES], int256):
    """
    @dev `Clearinghouse._trade_linear` on the future word of `instrument_id` among
         `futures` (a new one if there is none): cost += ceil(size·price), realized when
         flat (the word then leaves the list, the last one taking its place); leaving a
         side with a pending charge pays its exit charge (`_exit_charge`).
    @return The words after the trade and its cash change (WAD).
    """
    words: DynArray[uint256, MAX_FUTURES] = futures
    slot: uint256 = 0
    size: int256 = 0
    cost: int256 = 0
    for i: uint256 in range(len(words), bound=MAX_FUTURES):
        if words[i] & M32 == instrument_id:
            slot = i + 1
            size, cost = fixed._future_line(words[i])
            break
    cash: int256 = -self._exit_charge(trade, size)
    size += trade.size
    cost += fixed._ceil_div(trade.size * convert(trade.price, int256), IWAD)
    if size == 0:
        cash -= cost
        if slot != 0:
            last: uint256 = words.pop()
            if slot <= len(words):
                words[slot - 1] = last
        return words, cash
    # instrument | underlying | expiry | size int88 | cost int96 (`Clearinghouse._future_word`)
    word: uint256 = (
        instrument_id
        | (instrument.underlying << 32)
        | (instrument.expiry << 40)
        | ((convert(convert(size, bytes32), uint256) & (2**88 - 1)) << 72)
        | (convert(convert(cost, bytes32), uint256) << 160)
    )
    stored_size: int256 = 0
    stored_cost: int256 = 0
    stored_size, stored_cost = fixed._future_line(word)
    assert stored_size == size and stored_cost == cost, "lens: position out of range"
    if slot == 0:
        assert len(words) < MAX_FUTURES, "lens: position cap"
        words.append(word)
    else:
        words[slot - 1] = word
    return words, cash


@internal
@pure
def _with_size(
    words: DynArray[uint256, MAX_OPTIONS], instrument_id: uint256, instrument: IClearinghouse.Instrument, size: int256, max_options: uint256
) -> DynArray[uint256, MAX_OPTIONS]:
    """
    @dev `words` with `size` (WAD units, signed) added to the option's position, as
         `Clearinghouse._with_size` sets it: its word updated, appended (within the
         markets' `max_options`) or, when it nets to zero, removed (the last word taking its
         place).
    """
    result: DynArray[uint256, MAX_OPTIONS] = words
    slot: uint256 = 0
    held: int256 = 0
    for i: uint256 in range(len(result), bound=MAX_OPTIONS):
        if result[i] & M32 == instrument_id:
            slot = i + 1
            held = fixed._word_size(result[i])
            break
    held += size
    assert held >= -2**79 and held < 2**79, "lens: position out of range"
    if held == 0:
        last: uint256 = result.pop()
        if slot <= len(result):
            result[slot - 1] = last
        return result
    word: uint256 = fixed._word(instrument_id, instrument.underlying, instrument.kind, held)
    if slot == 0:
        assert len(result) < max_options, "lens: position cap"
        result.append(word)
    else:
        result[slot - 1] = word
    return result


@internal
@pure
def _pairs(words: DynArray[uint256, MAX_OPTIONS]) -> DynArray[uint256, MAX_OPTIONS // 2]:
    """
    @dev Full option words as the clearinghouse stores them, two halves to a word
         (`Clearinghouse._half`): instrument 32 | underlying 8 | kind 8 | size int80, the
         high half of the last word zero when the count is odd.
    """
    pairs: DynArray[uint256, MAX_OPTIONS // 2] = []
    for i: uint256 in range(len(words), bound=MAX_OPTIONS):
        half: uint256 = (words[i] & (2**48 - 1)) | ((convert(convert(fixed._word_size(words[i]), bytes32), uint256) & (2**80 - 1)) << 48)
        if i % 2 == 0:
            pairs.append(half)
        else:
            pairs[i // 2] |= half << 128
    return pairs
