# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title crossmargin collateral vault
@notice The single custodian of every account's collateral. An account is
        `(owner, subaccount)`; each subaccount is its own cross-margin pool.

        Balances are held in WAD: a token amount is multiplied by
        `10**(18 - decimals)` exactly once, here at the boundary, so 6, 8 and 18 decimal
        tokens all meet the engine in one unit. The settlement asset ("cash") is kept as a
        signed balance per account: trading can drive it negative (debt backed by the rest
        of the portfolio), but a withdrawal never can, so the tokens held always cover the
        claims on them.

        Withdrawals and moves between one's own subaccounts must leave the account at or
        above its initial margin, as the margin engine values it. A guardian can pause
        withdrawals and moves (new risk); deposits are never paused.

        Liquidation (SPECIFICATION.md §7): the liquidator freezes an account in auction (no
        withdrawals or moves out of it; deposits that cure it stay open), moves a fraction
        of its collateral and cash to a bidder, and socializes a deficit the insurance fund
        could not pay over every positive cash balance through `cash_index`: a positive
        balance written at index I_w is worth floor(balance · I / I_w) at index I.
@custom:security Every external function, views included, holds the reentrancy lock
        (`pragma nonreentrancy on`), except the views the margin engine reads while this
        vault calls it (`@reentrant`). Those views only ever see a consistent state: balances
        change after a deposit's tokens have arrived, and before a withdrawal's margin check
        and transfer. Deposits measure the balance the vault received; a fee-on-transfer token
        (or any token that delivers less than asked) is rejected.
"""

from snekmate.auth import ownable
from snekmate.auth import ownable_2step
from snekmate.utils import math
from snekmate.utils import pausable
from ethereum.ercs import IERC20
from ethereum.ercs import IERC20Detailed
from ethereum.ercs import IERC4626

from interfaces import IMarginEngine
from interfaces import IVault
from lib import accounts

initializes: ownable
initializes: ownable_2step[ownable := ownable]
initializes: pausable

exports: (
    ownable_2step.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
    pausable.paused,
)

implements: IVault


# @dev Most collateral assets that can be listed (the settlement asset is not counted).
# One bit each in an account's `held` mask, so the engine only visits what an account holds.
MAX_ASSETS: constant(uint256) = 16
# @dev Bounds of the longest pause the guardian alone may hold (s); default 3 days.
MIN_GUARDIAN_PAUSE: constant(uint256) = 3_600
MAX_GUARDIAN_PAUSE: constant(uint256) = 14 * 86_400
DEFAULT_GUARDIAN_PAUSE: constant(uint256) = 3 * 86_400
M64: constant(uint256) = 2**64 - 1
# @dev Most cash entries one `settle_cash` call applies (a trade touches four accounts).
MAX_CASH_ENTRIES: constant(uint256) = 8
# @dev The `settle_cash` account of the exit charges (`exit_charges`): id 0 is the zero
# address's, which nobody holds.
EXIT_CHARGES: constant(uint256) = 0
# @dev Highest haircut an asset may have (WAD): collateral keeps at least 10% of its value.
MAX_HAIRCUT: constant(uint256) = 9 * 10**17
WAD: constant(uint256) = 10**18
# @dev `cash_index` at launch. 1e36 keeps ~36 digits of precision through many socializations
# and still fits the 128-bit half of a cash line.
INDEX_ONE: constant(uint256) = 10**36
# @dev The index never falls below this: a socialization that would wipe out more than
# 1 − 1e-18 of all positive cash spreads only that much (the rest stays unpaid).
INDEX_FLOOR: constant(uint256) = 10**18
# the cash line's low half: the index it was written at (<= INDEX_ONE < 2**120) and, in
# its top bit, the account's auction freeze
INDEX_MASK: constant(uint256) = 2**127 - 1
FROZEN: constant(uint256) = 2**127
LOW128: constant(uint256) = 2**128 - 1


struct Asset:
    # 10**(18 - decimals); 0 means the token is not listed
    scale: uint256
    # bit of this asset in `held` masks; unused for the settlement asset
    index: uint256
    # most the vault holds for accounts (WAD); deposits beyond it revert
    cap: uint256
    # net deposits of this asset (WAD): for collateral, the sum of all balances; for the
    # settlement asset, deposits less withdrawals (floored at 0), as cash also moves between
    # accounts. The deposit cap applies to it
    total: uint256
    # oracle key of the asset's USD price (empty for the settlement asset)
    price_key: bytes32
    # underlying the asset tracks and is shocked with (e.g. "ETH"), or empty
    underlying: bytes32
    # haircuts on value for the maintenance and initial requirements (WAD, mm <= im)
    mm_haircut: uint256
    im_haircut: uint256


# @dev `Asset` as stored, with what every margin check reads per collateral line in two
#      words: `keys` the price key (high 128 bits) and the underlying name (low 128 bits),
#      each at most 16 bytes; `haircuts` mm (bits 0..127) and im (above).
struct StoredAsset:
    scale: uint256
    index: uint256
    cap: uint256
    total: uint256
    keys: uint256
    haircuts: uint256


# @dev The settlement asset (a USD stablecoin); its balances are `cash`.
SETTLEMENT_ASSET: public(immutable(address))
# @dev Listed assets by token address, the settlement asset included (`assets` unpacks).
asset_data: HashMap[address, StoredAsset]
# @dev Listed collateral tokens in listing order; `asset_list[i]` has `index == i`.
asset_list: public(DynArray[address, MAX_ASSETS])
# @dev Collateral balances (WAD) by account id, then token.
balances: HashMap[uint256, HashMap[address, uint256]]
# @dev Settlement balances by account id, one word each: the signed balance in WAD (int128,
# two's complement, high 128 bits) | the freeze of an account in auction (bit 127) |
# `cash_index` when it was last written (bits 0..126). Negative is debt; see `_cash` for a
# positive balance's value after a socialization. The freeze lives here because every
# margin check reads this word anyway: freezing costs no fresh slot, checking it no read.
cash_lines: HashMap[uint256, uint256]
# @dev Socialization index of positive cash (INDEX_ONE at launch; it only falls).
cash_index: public(uint256)
# @dev Sum of positive cash balances (WAD) as of their last write; the base a loss is
# spread over. Never below the balances it stands for (each rounds down on its own).
positive_cash: public(uint256)
# @dev Every loss socialized so far (WAD): spread over positive cash or paid from `exit_pool`.
socialized_loss: public(uint256)
# @dev Bit i set iff the account's balance of `asset_list[i]` is non-zero.
held: HashMap[uint256, uint256]
# @dev Trading operators by account id. Operators trade; they never withdraw or move.
operators: HashMap[uint256, HashMap[address, bool]]
# @dev The contract that values accounts (initial margin) for withdrawals and moves.
margin_engine: public(address)
# @dev May pause new risk (withdrawals, moves) for at most `guardian_pause` seconds.
guardian: public(address)
# @dev The guardian's pause, one word: longest pause (bits 0..63, s) | end of the running
# guardian pause (64..127, unix s; 0 when none) | earliest next guardian pause (128..191).
# After the end anyone may unpause; the guardian may then pause again only after as long
# again, so a guardian pauses at most half of the time. The owner's pauses are unbounded.
pause_terms: uint256
# @dev Contracts that may settle cash between accounts (the margin engine for premiums,
# fees, funding, perp PnL and expiry settlement; later the liquidator).
clearing: public(HashMap[address, bool])
# @dev Freezes accounts in auction, moves fractions of them, socializes deficits.
liquidator: public(address)
# @dev The insurance fund: its deposits (payouts to bidders) are never capped.
insurance_fund: public(address)
# @dev The losses of open insolvent auctions not yet paid, as the liquidator reserved them
# when each became known (WAD: −E + MM of the account then, less each slice's share).
pending_loss: public(uint256)
# @dev Cash held back from the settlement asset leaving positive balances while
# `pending_loss` exceeds the fund (WAD): each socialization draws on it first; what is left
# once no loss is pending goes to the insurance fund.
exit_pool: public(uint256)
# @dev The clearinghouse's exit charges (WAD): what positions leaving a side a pending
# deleveraging will charge paid on the way out (`settle_cash` entries for account
# EXIT_CHARGES); the liquidator spends them on the deleveraging they were charged for. What
# is left once no loss is pending goes to the insurance fund with `exit_pool`.
exit_charges: public(uint256)


event Deposit:
    owner: indexed(address)
    subaccount: indexed(uint96)
    asset: indexed(address)
    sender: address
    amount: uint256
    credit: uint256


event LossReserved:
    added: uint256
    released: uint256
    pending_loss: uint256


event ExitHeldBack:
    account: indexed(uint256)
    # the cash the account gave up (WAD), into `exit_pool`
    amount: uint256


event ExitPoolReleased:
    # what no socialization needed, to the insurance fund's vault cash (WAD)
    amount: uint256


event Withdraw:
    owner: indexed(address)
    subaccount: indexed(uint96)
    asset: indexed(address)
    receiver: address
    amount: uint256
    debit: uint256


event Move:
    owner: indexed(address)
    asset: indexed(address)
    from_subaccount: uint96
    to_subaccount: uint96
    amount: uint256


event OperatorSet:
    owner: indexed(address)
    subaccount: indexed(uint96)
    operator: indexed(address)
    approved: bool


event AssetListed:
    asset: indexed(address)
    index: uint256
    decimals: uint256
    price_key: bytes32
    underlying: bytes32


event HaircutsSet:
    asset: indexed(address)
    mm_haircut: uint256
    im_haircut: uint256


event CapSet:
    asset: indexed(address)
    cap: uint256


event MarginEngineSet:
    engine: indexed(address)


event GuardianSet:
    guardian: indexed(address)


event GuardianPauseSet:
    max_pause: uint256


event GuardianPaused:
    guardian: indexed(address)
    until: uint256


event ClearingSet:
    clearing: indexed(address)
    allowed: bool


event CashSettled:
    account: indexed(uint256)
    clearing: indexed(address)
    delta: int256


event LiquidatorSet:
    liquidator: indexed(address)


event InsuranceFundSet:
    fund: indexed(address)


event FrozenSet:
    account: indexed(uint256)
    frozen: bool


event FractionTransferred:
    source: indexed(uint256)
    target: indexed(uint256)
    fraction: uint256
    # cash moved from source to target, after the clearinghouse's settlement below
    cash: int256
    source_settled: int256
    target_settled: int256


event LossSocialized:
    # loss spread (WAD), credited to `recipient`; the new index and positive-cash base
    recipient: indexed(uint256)
    amount: uint256
    cash_index: uint256
    positive_cash: uint256


@deploy
def __init__(settlement_asset: address, settlement_cap: uint256):
    """
    @param settlement_asset The USD stablecoin that is the protocol's cash.
    @param settlement_cap Most cash the vault holds for accounts (WAD).
    """
    ownable.__init__()
    ownable_2step.__init__()
    pausable.__init__()
    self._set_guardian_pause(DEFAULT_GUARDIAN_PAUSE)
    SETTLEMENT_ASSET = settlement_asset
    self.cash_index = INDEX_ONE
    decimals: uint256 = self._decimals(settlement_asset)
    self.asset_data[settlement_asset].scale = 10 ** (18 - decimals)
    self.asset_data[settlement_asset].cap = settlement_cap
    log AssetListed(
        asset=settlement_asset, index=0, decimals=decimals, price_key=empty(bytes32), underlying=empty(bytes32)
    )
    log CapSet(asset=settlement_asset, cap=settlement_cap)


# ---------------------------------------------------------------- users


@external
def deposit(asset: address, amount: uint256, subaccount: uint96 = 0, recipient: address = msg.sender):
    """
    @notice Deposits `amount` of `asset` into `(recipient, subaccount)`. Never paused; anyone
            may deposit the settlement asset, or more of a collateral the account holds,
            into any account (to cure it, say); only the owner or its operators may add a
            collateral the account does not hold.
    @param amount Token amount in the token's own decimals.
    @custom:security A new collateral line adds its price feed (and its underlying's spot)
            to every valuation of the account, liquidation included: a stranger's dust of
            WBTC must not make an ETH account's liquidation depend on the BTC feed.
    """
    assert amount != 0, "vault: zero amount"
    assert recipient != empty(address), "vault: zero address"
    scale: uint256 = self.asset_data[asset].scale
    assert scale != 0, "vault: unlisted asset"
    account: uint256 = accounts._id(recipient, subaccount)
    if asset != SETTLEMENT_ASSET and msg.sender != recipient and self.balances[account][asset] == 0:
        assert self.operators[account][msg.sender], "vault: new collateral from a stranger"
    credit: uint256 = amount * scale
    total: uint256 = self.asset_data[asset].total + credit
    # insurance payouts to liquidation bidders must never be blocked by a cap
    if msg.sender != self.insurance_fund:
        assert total <= self.asset_data[asset].cap, "vault: cap exceeded"

    before: uint256 = staticcall IERC20(asset).balanceOf(self)
    assert extcall IERC20(asset).transferFrom(msg.sender, self, amount, default_return_value=True), "vault: transfer failed"
    received: uint256 = staticcall IERC20(asset).balanceOf(self)
    assert received >= before and received - before == amount, "vault: amount not received"

    self.asset_data[asset].total = total
    self._credit(account, asset, credit)
    log Deposit(owner=recipient, subaccount=subaccount, asset=asset, sender=msg.sender, amount=amount, credit=credit)


@external
def withdraw(asset: address, amount: uint256, subaccount: uint96 = 0, receiver: address = msg.sender):
    """
    @notice Withdraws `amount` of `asset` from the caller's `subaccount` to `receiver`. The
            account must stay at or above initial margin; cash cannot go negative.
    @param amount Token amount in the token's own decimals.
    """
    pausable._require_not_paused()
    assert amount != 0, "vault: zero amount"
    assert receiver != empty(address), "vault: zero address"
    scale: uint256 = self.asset_data[asset].scale
    assert scale != 0, "vault: unlisted asset"
    debit: uint256 = amount * scale
    account: uint256 = accounts._id(msg.sender, subaccount)
    assert not self._frozen(account), "vault: account in auction"

    # cash leaving while an unpaid loss is known pays its share of it first (measured
    # before it leaves the balances the loss would be spread over). Not the insurance
    # fund's harvest: its cash goes to its token balance, which pays the loss first
    # (`cover`) and which the hold-back counts as covering it, so nothing leaves the
    # loss's reach; and `_hold_back` reads the fund's `totalAssets`, which reverts under
    # the fund's lock while it harvests (the harvest then failed whenever a loss was
    # pending, and `cover` paid from the fund's tokens alone)
    sent: uint256 = amount
    if asset == SETTLEMENT_ASSET and msg.sender != self.insurance_fund:
        sent -= self._hold_back(account, amount, scale)
    self._debit(account, asset, debit)
    # For collateral `total` is the sum of all balances, the debited one included. Cash also
    # moves between accounts (premiums, PnL, fees), so a cash withdrawal may exceed the net
    # deposits `total` counts; it then stops at zero instead of wrapping. What is held back
    # stays in the vault (a claim of `exit_pool`): only what leaves is counted out.
    total: uint256 = self.asset_data[asset].total
    self.asset_data[asset].total = total - min(total, sent * scale)
    self._check_initial(account)

    assert extcall IERC20(asset).transfer(receiver, sent, default_return_value=True), "vault: transfer failed"
    log Withdraw(owner=msg.sender, subaccount=subaccount, asset=asset, receiver=receiver, amount=amount, debit=debit)


@external
def move(asset: address, amount: uint256, from_subaccount: uint96, to_subaccount: uint96):
    """
    @notice Moves `amount` of `asset` between two of the caller's subaccounts. The source
            must stay at or above initial margin.
    @param amount Token amount in the token's own decimals.
    """
    pausable._require_not_paused()
    assert amount != 0, "vault: zero amount"
    assert from_subaccount != to_subaccount, "vault: same subaccount"
    scale: uint256 = self.asset_data[asset].scale
    assert scale != 0, "vault: unlisted asset"
    wad: uint256 = amount * scale
    source: uint256 = accounts._id(msg.sender, from_subaccount)
    assert not self._frozen(source), "vault: account in auction"

    target: uint256 = accounts._id(msg.sender, to_subaccount)
    credited: uint256 = wad
    if asset == SETTLEMENT_ASSET:
        # cash that pays a debt leaves the positive balances a loss is spread over
        debt: uint256 = convert(max(-self._cash(target), 0), uint256)
        credited -= self._hold_back(source, min(amount, debt // scale), scale) * scale
    self._debit(source, asset, wad)
    self._credit(target, asset, credited)
    self._check_initial(source)
    log Move(owner=msg.sender, asset=asset, from_subaccount=from_subaccount, to_subaccount=to_subaccount, amount=amount)


@external
def set_operator(subaccount: uint96, operator: address, approved: bool):
    """
    @notice Lets `operator` trade for the caller's `subaccount` (never withdraw or move).
    """
    assert operator != empty(address) and operator != msg.sender, "vault: bad operator"
    self.operators[accounts._id(msg.sender, subaccount)][operator] = approved
    log OperatorSet(owner=msg.sender, subaccount=subaccount, operator=operator, approved=approved)


# ---------------------------------------------------------------- clearing


@external
def settle_cash(entries: DynArray[IVault.CashDelta, MAX_CASH_ENTRIES]):
    """
    @notice Adds each entry's `delta` (WAD, signed) to its account's cash. Only clearing
            contracts call it, for premiums, fees, funding, realized perp PnL and expiry
            payoffs; they keep the sum of all cash and open positions zero-sum, rounding
            toward the protocol. An entry for account EXIT_CHARGES (0: nobody's) moves
            `exit_charges` instead (the clearinghouse pays exit charges in, the liquidator
            spends them).
    @dev Cash may go negative here (debt backed by the rest of the portfolio); the caller
         checks margin. Never paused: settlement and liquidation must always go through.
         From a clearing contract, cash that pays a debt while a loss is pending gives up
         its share of the loss first, as a move onto one's own debt does (`_hold_back`).
    @custom:security Without that, cash left the positive balances a loss is spread over
         through a trade (a premium paid to one's own indebted account) and came back
         after the bid, paying nothing.
    """
    trading: bool = self.clearing[msg.sender]
    assert trading or msg.sender == self.liquidator, "vault: not clearing"
    for entry: IVault.CashDelta in entries:
        if entry.delta == 0:
            continue
        if entry.account == EXIT_CHARGES:
            charges: int256 = convert(self.exit_charges, int256) + entry.delta
            assert charges >= 0, "vault: exit charges short"
            self.exit_charges = convert(charges, uint256)
            log CashSettled(account=entry.account, clearing=msg.sender, delta=entry.delta)
        else:
            applied: int256 = self._add_cash(entry.account, entry.delta, trading)
            log CashSettled(account=entry.account, clearing=msg.sender, delta=applied)


# ---------------------------------------------------------------- liquidation


@external
@view
@reentrant
def frozen(account: uint256) -> bool:
    """
    @notice Whether the account is in a liquidation auction: no withdrawals, moves out or
            trades; deposits stay open.
    """
    return self._frozen(account)


@external
def set_frozen(account: uint256, frozen: bool):
    """
    @notice Freezes an account for its auction (or thaws it). Only the liquidator.
    """
    assert msg.sender == self.liquidator, "vault: not liquidator"
    line: uint256 = self.cash_lines[account]
    if frozen:
        self.cash_lines[account] = line | FROZEN
    else:
        self.cash_lines[account] = line & ~FROZEN
    log FrozenSet(account=account, frozen=frozen)


@external
def transfer_fraction(source: uint256, target: uint256, fraction: uint256, source_settled: int256, target_settled: int256):
    """
    @notice Adds the cash the clearinghouse just settled for both accounts (WAD, signed:
            perp funding, and the cost of a bidder's perp that nets to zero), then moves
            `fraction` (WAD, <= 1) of `source`'s cash and of every collateral balance to
            `target`: a bidder buying a slice of a liquidated account.
    @dev Each amount moved rounds toward zero (the source keeps the remainder), so the
         sum of balances is unchanged to the wei. One cash write per account for both
         steps. Never paused.
    """
    assert msg.sender == self.liquidator, "vault: not liquidator"
    assert fraction <= WAD, "vault: bad fraction"
    cash: int256 = self._cash(source) + source_settled
    # int256 division truncates toward zero; |cash| < 2**127 so the product fits
    moved: int256 = cash * convert(fraction, int256) // convert(WAD, int256)
    if source_settled != moved:
        self._add_cash(source, source_settled - moved)
    if target_settled + moved != 0:
        self._add_cash(target, target_settled + moved)
    mask: uint256 = self.held[source]
    for i: uint256 in range(MAX_ASSETS):
        if mask == 0:
            break
        if mask & 1 == 1:
            asset: address = self.asset_list[i]
            amount: uint256 = self.balances[source][asset] * fraction // WAD
            if amount != 0:
                self._debit(source, asset, amount)
                self._credit(target, asset, amount)
        mask >>= 1
    log FractionTransferred(
        source=source,
        target=target,
        fraction=fraction,
        cash=moved,
        source_settled=source_settled,
        target_settled=target_settled,
    )


@external
def socialize(amount: uint256, recipient: uint256, released: uint256) -> uint256:
    """
    @notice Pays a loss of `amount` (WAD) to `recipient` (the bidder who took an insolvent
            account): first from `exit_pool`, the rest spread over every positive cash
            balance pro rata by lowering `cash_index`. At most the positive cash there is
            can be spread, and never so much that the index falls below INDEX_FLOOR. Then
            `released` (WAD) of `pending_loss` is released (`reserve_loss`).
    @return The amount paid (WAD).
    """
    assert msg.sender == self.liquidator, "vault: not liquidator"
    pooled: uint256 = min(amount, self.exit_pool)
    if pooled != 0:
        self.exit_pool -= pooled
        self.socialized_loss += pooled
        self._add_cash(recipient, convert(pooled, int256))
    self._release(0, released)
    return pooled + self._spread(amount - pooled, recipient)


@external
def reserve_loss(added: uint256, released: uint256):
    """
    @notice The liquidator reserves the loss of an auction found insolvent (`added`, WAD),
            or releases what a bid paid or an ended auction leaves (`released`).
    """
    assert msg.sender == self.liquidator, "vault: not liquidator"
    self._release(added, released)


@internal
def _spread(amount: uint256, recipient: uint256) -> uint256:
    """
    @dev Socializes `amount` (WAD) over every positive cash balance and credits it to
         `recipient` (see `socialize`); returns the amount spread.
    """
    base: uint256 = self.positive_cash
    index: uint256 = self.cash_index
    if base == 0 or amount == 0:
        return 0
    # at most what keeps the index at or above INDEX_FLOOR
    spread: uint256 = min(amount, base - math._mul_div(base, INDEX_FLOOR, index, True))
    if spread == 0:
        return 0
    # rounds the index down: every balance loses at least its share
    index = index * (base - spread) // base
    self.cash_index = index
    self.positive_cash = base - spread
    self.socialized_loss += spread
    log LossSocialized(recipient=recipient, amount=spread, cash_index=index, positive_cash=base - spread)
    self._add_cash(recipient, convert(spread, int256))
    return spread


# ---------------------------------------------------------------- views


@external
@pure
def account_id(owner: address, subaccount: uint96) -> uint256:
    """
    @notice The storage key of `(owner, subaccount)`: `owner << 96 | subaccount`.
    """
    return accounts._id(owner, subaccount)


@external
@view
def balance_of(owner: address, subaccount: uint96, asset: address) -> uint256:
    """
    @notice Collateral balance (WAD) of a non-settlement asset.
    """
    return self.balances[accounts._id(owner, subaccount)][asset]


@external
@view
def cash_of(owner: address, subaccount: uint96) -> int256:
    """
    @notice Signed settlement balance (WAD).
    """
    return self._cash(accounts._id(owner, subaccount))


@external
@view
def withdrawable(owner: address, subaccount: uint96, asset: address) -> uint256:
    """
    @notice The balance, in token units (rounded down), ignoring margin.
    """
    scale: uint256 = self.asset_data[asset].scale
    if scale == 0:
        return 0
    account: uint256 = accounts._id(owner, subaccount)
    if asset == SETTLEMENT_ASSET:
        return convert(max(self._cash(account), 0), uint256) // scale
    return self.balances[account][asset] // scale


@external
@view
def is_operator(owner: address, subaccount: uint96, operator: address) -> bool:
    return self.operators[accounts._id(owner, subaccount)][operator]


@external
@view
def asset_count() -> uint256:
    return len(self.asset_list)


@external
@view
def assets(asset: address) -> Asset:
    """
    @notice An asset's listing (`scale` 0 if not listed), deposit cap, net deposits and
            haircuts (all WAD but `scale` and `index`).
    """
    stored: StoredAsset = self.asset_data[asset]
    return Asset(
        scale=stored.scale,
        index=stored.index,
        cap=stored.cap,
        total=stored.total,
        price_key=convert(stored.keys & ~LOW128, bytes32),
        underlying=convert(stored.keys << 128, bytes32),
        mm_haircut=stored.haircuts & LOW128,
        im_haircut=stored.haircuts >> 128,
    )


@external
@view
@reentrant
def account_state(account: uint256) -> (int256, DynArray[IVault.Collateral, MAX_ASSETS]):
    """
    @notice Cash (WAD) and every non-zero collateral line of `account`, with the asset's
            oracle key and haircuts: all the margin engine needs from the vault, in one call.
    @dev `@reentrant`: the engine reads it while this vault calls the engine.
    """
    lines: DynArray[IVault.Collateral, MAX_ASSETS] = []
    mask: uint256 = self.held[account]
    for i: uint256 in range(MAX_ASSETS):
        if mask == 0:
            break
        if mask & 1 == 1:
            asset: address = self.asset_list[i]
            keys: uint256 = self.asset_data[asset].keys
            haircuts: uint256 = self.asset_data[asset].haircuts
            lines.append(
                IVault.Collateral(
                    asset=asset,
                    balance=self.balances[account][asset],
                    price_key=convert(keys & ~LOW128, bytes32),
                    underlying=convert(keys << 128, bytes32),
                    mm_haircut=haircuts & LOW128,
                    im_haircut=haircuts >> 128,
                )
            )
        mask >>= 1
    return self._cash(account), lines


# ---------------------------------------------------------------- owner and guardian


@external
def list_asset(
    asset: address, price_key: bytes32, underlying: bytes32, mm_haircut: uint256, im_haircut: uint256, cap: uint256
):
    """
    @notice Lists a collateral token.
    @param price_key Oracle key of its USD price.
    @param underlying The underlying it tracks (shocked with that spot), or empty.
    @param mm_haircut Maintenance haircut (WAD fraction), <= `im_haircut`.
    @param im_haircut Initial haircut (WAD fraction), <= 0.9.
    @param cap Most the vault holds of it for accounts (WAD).
    """
    ownable._check_owner()
    assert asset.is_contract, "vault: asset not a contract"
    assert self.asset_data[asset].scale == 0, "vault: already listed"
    assert price_key != empty(bytes32), "vault: zero price key"
    assert convert(price_key, uint256) & LOW128 == 0 and convert(underlying, uint256) & LOW128 == 0, "vault: key over 16 bytes"
    index: uint256 = len(self.asset_list)
    assert index < MAX_ASSETS, "vault: too many assets"
    decimals: uint256 = self._decimals(asset)
    self._check_haircuts(mm_haircut, im_haircut)
    self.asset_list.append(asset)
    self.asset_data[asset] = StoredAsset(
        scale=10 ** (18 - decimals),
        index=index,
        cap=cap,
        total=0,
        keys=convert(price_key, uint256) | (convert(underlying, uint256) >> 128),
        haircuts=mm_haircut | (im_haircut << 128),
    )
    log AssetListed(asset=asset, index=index, decimals=decimals, price_key=price_key, underlying=underlying)
    log HaircutsSet(asset=asset, mm_haircut=mm_haircut, im_haircut=im_haircut)
    log CapSet(asset=asset, cap=cap)


@external
def set_haircuts(asset: address, mm_haircut: uint256, im_haircut: uint256):
    """
    @notice Sets an asset's haircuts (WAD fractions; mm <= im <= 0.9).
    """
    ownable._check_owner()
    self._check_collateral(asset)
    self._check_haircuts(mm_haircut, im_haircut)
    # both below 2**128 (`_check_haircuts`)
    self.asset_data[asset].haircuts = mm_haircut | (im_haircut << 128)
    log HaircutsSet(asset=asset, mm_haircut=mm_haircut, im_haircut=im_haircut)


@external
def set_cap(asset: address, cap: uint256):
    """
    @notice Sets an asset's deposit cap (WAD). Lowering it below `total` only stops deposits.
    """
    ownable._check_owner()
    assert self.asset_data[asset].scale != 0, "vault: unlisted asset"
    self.asset_data[asset].cap = cap
    log CapSet(asset=asset, cap=cap)


@external
def set_margin_engine(engine: address):
    ownable._check_owner()
    assert engine.is_contract, "vault: engine not a contract"
    self.margin_engine = engine
    log MarginEngineSet(engine=engine)


@external
def set_clearing(clearing: address, allowed: bool):
    """
    @notice Allows or revokes a clearing contract (`settle_cash`).
    """
    ownable._check_owner()
    assert clearing.is_contract, "vault: clearing not a contract"
    self.clearing[clearing] = allowed
    log ClearingSet(clearing=clearing, allowed=allowed)


@external
def set_liquidator(liquidator: address):
    """
    @notice Sets the liquidation contract (freezes, moves fractions, socializes).
    """
    ownable._check_owner()
    assert liquidator.is_contract, "vault: liquidator not a contract"
    self.liquidator = liquidator
    log LiquidatorSet(liquidator=liquidator)


@external
def set_insurance_fund(fund: address):
    """
    @notice Sets the insurance fund, whose payouts to bidders are deposits past the cap.
    """
    ownable._check_owner()
    assert fund.is_contract, "vault: fund not a contract"
    self.insurance_fund = fund
    log InsuranceFundSet(fund=fund)


@external
def set_guardian(guardian: address):
    ownable._check_owner()
    self.guardian = guardian
    log GuardianSet(guardian=guardian)


@external
def set_guardian_pause(max_pause: uint256):
    """
    @notice The longest pause (s, 1 hour .. 14 days) the guardian alone may hold.
    """
    ownable._check_owner()
    self._set_guardian_pause(max_pause)


@external
def pause():
    """
    @notice Stops withdrawals, moves and risk-adding trades. Deposits, settlement and
            liquidation go on. The owner's pause lasts until it unpauses; the guardian's
            at most `guardian_pause` seconds (see `unpause`), and the guardian may pause
            again only as long after that pause ended.
    """
    terms: uint256 = self.pause_terms
    if msg.sender != ownable.owner:
        assert msg.sender == self.guardian, "vault: not guardian"
        assert block.timestamp >= terms >> 128, "vault: guardian pause cooling down"
        until: uint256 = block.timestamp + (terms & M64)
        self.pause_terms = (terms & M64) | (until << 64)
        log GuardianPaused(guardian=msg.sender, until=until)
    # the owner's pause has no end: `until` is 0 then (every unpause clears it, and a paused
    # vault cannot be paused again)
    pausable._pause()


@external
def unpause():
    """
    @notice The owner unpauses at any time; anyone once a guardian's pause has run its
            longest (then the guardian may pause again only `guardian_pause` later).
    """
    terms: uint256 = self.pause_terms
    until: uint256 = (terms >> 64) & M64
    if msg.sender != ownable.owner:
        assert until != 0 and block.timestamp >= until, "vault: pause not expired"
        terms = (terms & M64) | ((block.timestamp + (terms & M64)) << 128)
    self.pause_terms = terms & ~(M64 << 64)
    pausable._unpause()


@external
@view
def guardian_pause() -> (uint256, uint256, uint256):
    """
    @notice The longest guardian pause (s), the end of the running one (0 if none) and
            the earliest time the guardian may pause again (unix s).
    """
    terms: uint256 = self.pause_terms
    return terms & M64, (terms >> 64) & M64, terms >> 128


# ---------------------------------------------------------------- internals


@internal
def _set_guardian_pause(max_pause: uint256):
    assert max_pause >= MIN_GUARDIAN_PAUSE and max_pause <= MAX_GUARDIAN_PAUSE, "vault: guardian pause out of bounds"
    self.pause_terms = (self.pause_terms & ~M64) | max_pause
    log GuardianPauseSet(max_pause=max_pause)


@internal
@view
def _cash(account: uint256) -> int256:
    """
    @dev The account's cash (WAD): debt as written, a positive balance scaled by the
         index's fall since it was written, rounded down.
    """
    line: uint256 = self.cash_lines[account]
    # the top 128 bits hold the balance in two's complement; the arithmetic shift restores it
    cash: int256 = convert(convert(line, bytes32), int256) >> 128
    if cash <= 0:
        return cash
    written: uint256 = line & INDEX_MASK
    index: uint256 = self.cash_index
    if written == index:
        return cash
    # cash < 2**127 and index <= 1e36 < 2**120: the product fits
    return convert(convert(cash, uint256) * index // written, int256)


@internal
def _release(added: uint256, released: uint256):
    """
    @dev Moves `pending_loss`; once no loss is pending, what `exit_pool` and `exit_charges`
         hold goes to the insurance fund's vault cash.
    """
    pending: uint256 = self.pending_loss + added
    pending -= min(pending, released)
    self.pending_loss = pending
    if added != 0 or released != 0:
        log LossReserved(added=added, released=released, pending_loss=pending)
    if pending != 0:
        return
    pool: uint256 = self.exit_pool + self.exit_charges
    if pool != 0:
        self.exit_pool = 0
        self.exit_charges = 0
        self._add_cash(accounts._id(self.insurance_fund, 0), convert(pool, int256))
        log ExitPoolReleased(amount=pool)


@internal
def _hold_back(account: uint256, amount: uint256, scale: uint256) -> uint256:
    """
    @dev The share of the pending loss the fund cannot cover that `amount` of positive cash
         leaving would have paid had it stayed, rounded up:
         ceil(amount · (pending_loss − fund assets) / positive_cash), at most `amount`.
         It goes to `exit_pool`; returns it. `amount` and the result are in units of
         `scale` WAD: settlement token units, or WAD (`scale` 1).
    @custom:security The fix for leaving ahead of a visible loss: an insolvent auction is
         public for up to an hour, and a holder that withdrew before its bid and deposited
         after it paid nothing while those who stayed paid more. Now a holder leaving pays
         at least the share staying would cost it, so those who stay pay no more than if
         everyone had stayed (SPECIFICATION.md §7).
    """
    pending: uint256 = self.pending_loss
    if pending == 0:
        return 0
    covered: uint256 = 0
    fund: address = self.insurance_fund
    if fund != empty(address):
        covered = staticcall IERC4626(fund).totalAssets() * self.asset_data[SETTLEMENT_ASSET].scale
    base: uint256 = self.positive_cash
    if covered >= pending or base == 0:
        return 0
    held: uint256 = min(amount, math._mul_div(amount, pending - covered, base, True))
    if held != 0:
        self.exit_pool += held * scale
        log ExitHeldBack(account=account, amount=held * scale)
    return held


@internal
@view
def _frozen(account: uint256) -> bool:
    return self.cash_lines[account] & FROZEN != 0


@internal
def _add_cash(account: uint256, delta: int256, hold: bool = False) -> int256:
    """
    @dev Adds `delta` to the account's cash, rewriting it at the current index, and keeps
         `positive_cash` in step. With `hold`, a credit that pays a debt gives up its share
         of a pending loss first (`_hold_back`). Returns the change made (WAD).
    """
    old: int256 = self._cash(account)
    applied: int256 = delta
    if hold and delta > 0 and old < 0:
        applied -= convert(self._hold_back(account, convert(min(delta, -old), uint256), 1), int256)
    new: int256 = old + applied
    assert new < 2**127 and new >= -(2**127), "vault: cash out of range"
    # the freeze bit is kept
    self.cash_lines[account] = (
        (convert(convert(new, bytes32), uint256) << 128) | (self.cash_lines[account] & FROZEN) | self.cash_index
    )
    self.positive_cash = self.positive_cash + convert(max(new, 0), uint256) - convert(max(old, 0), uint256)
    return applied


@internal
def _credit(account: uint256, asset: address, wad: uint256):
    if asset == SETTLEMENT_ASSET:
        self._add_cash(account, convert(wad, int256))
        return
    balance: uint256 = self.balances[account][asset]
    if balance == 0:
        self.held[account] |= 1 << self.asset_data[asset].index
    self.balances[account][asset] = balance + wad


@internal
def _debit(account: uint256, asset: address, wad: uint256):
    if asset == SETTLEMENT_ASSET:
        assert self._cash(account) >= convert(wad, int256), "vault: insufficient balance"
        self._add_cash(account, -convert(wad, int256))
        return
    balance: uint256 = self.balances[account][asset]
    assert balance >= wad, "vault: insufficient balance"
    # cannot underflow: checked just above
    balance = unsafe_sub(balance, wad)
    self.balances[account][asset] = balance
    if balance == 0:
        self.held[account] &= ~(1 << self.asset_data[asset].index)


@internal
def _check_initial(account: uint256):
    engine: address = self.margin_engine
    assert engine != empty(address), "vault: no margin engine"
    # a call, not a staticcall: the engine stores risk arrays it had to refresh
    assert extcall IMarginEngine(engine).check_initial(account) >= 0, "vault: insufficient margin"


@internal
@view
def _check_collateral(asset: address):
    assert self.asset_data[asset].scale != 0, "vault: unlisted asset"
    assert asset != SETTLEMENT_ASSET, "vault: settlement asset"


@internal
@pure
def _check_haircuts(mm_haircut: uint256, im_haircut: uint256):
    assert mm_haircut <= im_haircut and im_haircut <= MAX_HAIRCUT, "vault: haircut out of bounds"


@internal
@view
def _decimals(asset: address) -> uint256:
    decimals: uint256 = convert(staticcall IERC20Detailed(asset).decimals(), uint256)
    assert decimals <= 18, "vault: decimals above 18"
    return decimals
