# pragma version ~=0.4.3
"""
@title crossmargin lens
@notice Batch views for the SDK, the reference model, keepers and `ape run status`: one
        `eth_call` returns what would otherwise take one round trip per position.
        `snapshot(account)` loads every input of an account's valuation (the model's
        `snapshot`); `instruments`, `risk_arrays`, `array_epochs`, `holders_sizes` and
        `underlyings` read many instruments, accounts or underlyings at once.

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

from interfaces import IClearinghouse
from interfaces import IMarkets
from interfaces import IVault


interface IOracleRouter:
    def price_rounds(key_a: bytes32, key_b: bytes32, liquidation: bool) -> (uint256, uint80, uint256, uint80): view


interface IClearing:
    def option_ids(account: uint256) -> DynArray[uint256, MAX_OPTIONS]: view
    def perp_mask(account: uint256) -> uint256: view
    def option_size(account: uint256, instrument_id: uint256) -> int256: view


interface IEngine:
    def risk_array(instrument_id: uint256) -> (uint256, uint256, DynArray[uint256, MAX_SCENARIOS], bool): view
    def epoch(underlying: uint256) -> (uint80, uint80, uint256, uint256, uint256): view
    def grid(underlying: uint256) -> (DynArray[int256, MAX_SCENARIOS], DynArray[uint256, MAX_SCENARIOS], DynArray[uint256, MAX_SCENARIOS]): view
    def underlyings(underlying: uint256) -> Listing: view
    def underlying_ids(name: bytes32) -> uint256: view
    def im_factor() -> uint256: view
    def max_array_age() -> uint256: view
    def rate() -> uint256: view


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
