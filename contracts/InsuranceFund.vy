# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title crossmargin insurance fund
@notice An ERC-4626 vault over the settlement asset (USDC). LPs deposit and receive shares;
        the fund earns a share of trading fees and the liquidation fees, and pays bidders who
        take over insolvent accounts (`cover`).

        Units: `assets` are token units of the settlement asset (6 decimals for USDC);
        `shares` have `decimals() = asset decimals + DECIMALS_OFFSET` (18 for USDC); times
        and durations are seconds.

        Income arrives as vault cash: the exchange and the liquidator credit the cash of the
        fund's own vault account `(this contract, subaccount 0)`. `harvest()` (anyone) withdraws
        its positive cash, in whole token units, into the fund's token balance, which is what
        `totalAssets()` counts. Deposits, mints, withdrawals, redemptions and `cover` harvest
        first.

        Withdrawals need a cooldown: `request_withdraw(shares)` starts it; `withdraw` and
        `redeem` succeed only while `ready_at <= now <= ready_at + window`, where
        `ready_at = requested_at + cooldown`, and only up to the requested shares. So an LP
        cannot run ahead of a loss it sees coming (an insolvent account in auction).
        While the vault holds a loss pending (`Vault.pending_loss`, the reserve of the open
        insolvent auctions), exits are priced on the token balance less the part of that
        loss the fund would cover, so an LP whose window happens to be open leaves with
        its share of the loss paid.

        Built on snekmate's `erc4626` module (share math with virtual shares and assets,
        ERC-20 and EIP-2612 permit) and `ownable_2step` for the owner. The module's
        `deposit`, `mint`, `withdraw`, `redeem`, `maxWithdraw`, `maxRedeem`,
        `previewDeposit`, `previewMint`, `transfer` and `transferFrom` are replaced here;
        the share-price views are wrapped so they hold this contract's reentrancy lock.
@custom:security Inflation attack: the module adds `10**DECIMALS_OFFSET` virtual shares and
        one virtual asset unit to every conversion. With an offset of 12, an attacker who
        holds the only share and donates `D` token units can take from a victim's deposit at
        most about `D / 10**12` units, so the attack costs a trillion times what it can
        steal. Deposits that would mint zero shares revert.

        Reentrancy: every external function of this file, views included, holds the
        contract's lock (`pragma nonreentrancy on`). The ERC-20 functions exported from the
        module (`balanceOf`, `approve`, `permit`, ...) are compiled under the module's own
        pragma and do not; none of them moves assets or depends on the share price.

        Pending loss (audit, stop 23): an LP whose window was open when an insolvent
        auction started redeemed at the price before the loss, and the LPs who stayed paid
        its share. Exits now price on `totalAssets - min(totalAssets, ceil(pending_loss /
        scale))` (`_exit_assets`); deposits keep the full price, so a depositor cannot buy
        in cheaply ahead of the loss either: it buys at the price before the loss and
        pays its share of it. An exit then leaves at least `min(totalAssets,
        ceil(pending_loss / scale))` in the fund: it never lowers what the fund covers of
        the pending loss, which is also what the vault's hold-back counts on. While the
        loss is pending, `previewRedeem` / `previewWithdraw` / `maxWithdraw` price as the
        exits do (exact when nothing is left to harvest).

        Requests never exceed balances: a request is capped by the balance when it is
        made, redeeming uses it up, and a transfer out lowers it to what the sender still
        holds. So a set of shares backs at most one open request at a time, and LPs cannot
        keep staggered requests on several addresses and move one pool of shares to
        whichever window is open.
"""

from ethereum.ercs import IERC20
from ethereum.ercs import IERC4626

from snekmate.auth import ownable
from snekmate.auth import ownable_2step
from snekmate.extensions import erc4626
from snekmate.tokens import erc20
from snekmate.utils import math

implements: IERC20
implements: IERC4626

initializes: erc4626
# the `ownable` that `erc4626` initializes (the deployer is its owner) is the one the
# two-step transfer acts on, so the fund has a single owner
initializes: ownable_2step[ownable := ownable]
uses: (ownable, erc20)

exports: (
    erc4626.balanceOf,
    erc4626.totalSupply,
    erc4626.approve,
    erc4626.allowance,
    erc4626.name,
    erc4626.symbol,
    erc4626.decimals,
    erc4626.permit,
    erc4626.nonces,
    erc4626.DOMAIN_SEPARATOR,
    erc4626.eip712Domain,
    erc4626.asset,
    erc4626.maxDeposit,
    erc4626.maxMint,
    ownable_2step.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
)


# @dev What the fund uses of the collateral vault.
interface IFundVault:
    def deposit(asset: address, amount: uint256, subaccount: uint96, recipient: address): nonpayable
    def withdrawable(owner: address, subaccount: uint96, asset: address) -> uint256: view
    def pending_loss() -> uint256: view
    def SETTLEMENT_ASSET() -> address: view


# @dev Shares carry 12 more decimals than the asset: 18 for USDC, the protocol's WAD. The
#      module's virtual shares (`10**12` per virtual asset unit) make an inflation attack
#      cost about 10**12 times what it can take from a victim (see the security note above),
#      while the first LP still gets 10**12 shares per token unit, far from any overflow.
DECIMALS_OFFSET: constant(uint8) = 12
VIRTUAL_SHARES: constant(uint256) = 10**12
HOUR: constant(uint256) = 3_600
DAY: constant(uint256) = 86_400
# @dev Bounds of both `cooldown` and `window` (seconds).
MIN_PERIOD: constant(uint256) = HOUR
MAX_PERIOD: constant(uint256) = 30 * DAY
DEFAULT_COOLDOWN: constant(uint256) = 7 * DAY
DEFAULT_WINDOW: constant(uint256) = 2 * DAY
# @dev The fund's vault account is its subaccount 0; fees are credited there.
FUND_SUBACCOUNT: constant(uint96) = 0


struct Request:
    # shares the owner may still withdraw or redeem in this request's window;
    # always <= the owner's share balance
    shares: uint256
    # unix time (s) of the request; the window opens `cooldown` later
    requested_at: uint256


# @dev The collateral vault: where income arrives as cash and where `cover` pays.
VAULT: public(immutable(address))
# @dev The settlement asset (the ERC-4626 `asset`), kept as an interface for calls.
_ASSET: immutable(IERC20)
# @dev WAD per token unit of the asset, `10**(18 - decimals)`: the vault's `scale` for it.
_SCALE: immutable(uint256)
# @dev The only caller of `cover` (the liquidation engine); empty until the owner sets it.
liquidator: public(address)
# @dev Seconds between a withdrawal request and the opening of its window (1 h .. 30 d).
cooldown: public(uint256)
# @dev Seconds the window stays open once ready (1 h .. 30 d).
window: public(uint256)
# @dev Open withdrawal request per share owner. A new request replaces the old one.
requests: public(HashMap[address, Request])


event WithdrawRequested:
    owner: indexed(address)
    shares: uint256
    # unix times (s): the window is [ready_at, expires_at], at today's cooldown and window
    ready_at: uint256
    expires_at: uint256


event CooldownSet:
    cooldown: uint256
    window: uint256


event LiquidatorSet:
    liquidator: indexed(address)


event Harvested:
    # token units moved from the fund's vault cash to its token balance
    amount: uint256


event Covered:
    recipient: indexed(address)
    subaccount: indexed(uint96)
    # token units asked for and paid
    requested: uint256
    paid: uint256


@deploy
def __init__(
    asset_: address,
    vault_: address,
    name_: String[25],
    symbol_: String[5],
    name_eip712_: String[50],
    version_eip712_: String[20],
):
    """
    @notice The deployer becomes the owner; cooldown 7 days, window 2 days.
    @param asset_ The settlement asset; must be the vault's.
    @param vault_ The collateral vault.
    @param name_ Share token name (e.g. "crossmargin insurance").
    @param symbol_ Share token symbol (e.g. "cmINS").
    @param name_eip712_ EIP-712 domain name for `permit`.
    @param version_eip712_ EIP-712 domain version for `permit`.
    """
    assert vault_.is_contract, "fund: vault not a contract"
    assert staticcall IFundVault(vault_).SETTLEMENT_ASSET() == asset_, "fund: not settlement asset"
    erc4626.__init__(name_, symbol_, IERC20(asset_), DECIMALS_OFFSET, name_eip712_, version_eip712_)
    ownable_2step.__init__()
    VAULT = vault_
    _ASSET = IERC20(asset_)
    # the vault lists the settlement asset only with decimals <= 18
    _SCALE = 10 ** (18 - convert(erc4626._UNDERLYING_DECIMALS, uint256))
    self.cooldown = DEFAULT_COOLDOWN
    self.window = DEFAULT_WINDOW
    log CooldownSet(cooldown=DEFAULT_COOLDOWN, window=DEFAULT_WINDOW)


# ---------------------------------------------------------------- LPs


@external
def deposit(assets: uint256, receiver: address) -> uint256:
    """
    @notice Deposits `assets` token units and mints shares to `receiver` (rounded down).
    @dev Harvests first, and prices the shares on the fund's token balance plus whatever
         vault cash is still unharvested (`pending_income`). So an LP who deposits just before
         (or just after) income lands in the fund's vault account pays for its share of that
         income instead of capturing it, even while the vault's withdrawals are paused.
    @param assets Token units of the settlement asset.
    @param receiver Who gets the shares.
    @return uint256 Shares minted.
    """
    assert assets != 0, "fund: zero amount"
    self._harvest()
    shares: uint256 = self._to_shares_gross(assets, False)
    assert shares != 0, "fund: zero shares"
    erc4626._deposit(msg.sender, receiver, assets, shares)
    return shares


@external
def mint(shares: uint256, receiver: address) -> uint256:
    """
    @notice Mints exactly `shares` to `receiver` for the assets they cost (rounded up).
    @dev Harvests first and prices like `deposit` (unharvested vault cash included).
    @param shares Shares to mint.
    @param receiver Who gets the shares.
    @return uint256 Token units taken from the caller.
    """
    assert shares != 0, "fund: zero amount"
    self._harvest()
    assets: uint256 = self._to_assets_gross(shares, True)
    erc4626._deposit(msg.sender, receiver, assets, shares)
    return assets


@external
def request_withdraw(shares: uint256):
    """
    @notice Starts the cooldown for withdrawing up to `shares` of the caller's shares. Replaces
            any earlier request and restarts the clock.
    @param shares Shares to be able to withdraw or redeem; at most the caller's balance.
    """
    assert shares != 0, "fund: zero amount"
    assert shares <= erc20.balanceOf[msg.sender], "fund: above balance"
    self.requests[msg.sender] = Request(shares=shares, requested_at=block.timestamp)
    ready_at: uint256 = block.timestamp + self.cooldown
    log WithdrawRequested(owner=msg.sender, shares=shares, ready_at=ready_at, expires_at=ready_at + self.window)


@external
def withdraw(assets: uint256, receiver: address, owner: address) -> uint256:
    """
    @notice Burns the shares worth `assets` token units (rounded up) from `owner` and sends
            `assets` to `receiver`. Only inside `owner`'s request window and up to its
            requested shares; a caller other than `owner` spends `owner`'s share allowance.
    @dev Harvests first, so the exit gets its part of the income already earned; priced on
         `_exit_assets` (the token balance less the fund's part of a pending loss).
    @param assets Token units to receive.
    @param receiver Who gets the tokens.
    @param owner Whose shares are burned.
    @return uint256 Shares burned.
    """
    assert assets != 0, "fund: zero amount"
    self._harvest()
    shares: uint256 = self._to_shares_exit(assets, True)
    self._use_request(owner, shares)
    erc4626._withdraw(msg.sender, receiver, owner, assets, shares)
    return shares


@external
def redeem(shares: uint256, receiver: address, owner: address) -> uint256:
    """
    @notice Burns `shares` from `owner` and sends what they are worth (rounded down) to
            `receiver`. Only inside `owner`'s request window and up to its requested shares;
            a caller other than `owner` spends `owner`'s share allowance.
    @dev Harvests first, so the exit gets its part of the income already earned; priced on
         `_exit_assets` (the token balance less the fund's part of a pending loss).
    @param shares Shares to burn.
    @param receiver Who gets the tokens.
    @param owner Whose shares are burned.
    @return uint256 Token units sent.
    """
    assert shares != 0, "fund: zero amount"
    self._harvest()
    self._use_request(owner, shares)
    assets: uint256 = self._to_assets_exit(shares, False)
    erc4626._withdraw(msg.sender, receiver, owner, assets, shares)
    return assets


@external
def transfer(to: address, amount: uint256) -> bool:
    """
    @notice ERC-20 transfer of shares. The sender's open request is lowered to the balance it
            keeps.
    """
    erc20._transfer(msg.sender, to, amount)
    self._cap_request(msg.sender)
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    """
    @notice ERC-20 transfer of shares with an allowance. `owner`'s open request is lowered
            to the balance it keeps.
    """
    erc20._spend_allowance(owner, msg.sender, amount)
    erc20._transfer(owner, to, amount)
    self._cap_request(owner)
    return True


# ---------------------------------------------------------------- income and payouts


@external
def harvest() -> uint256:
    """
    @notice Moves the fund's positive vault cash, in whole token units, into its token
            balance. Anyone may call it.
    @dev Never reverts for the vault's sake: a paused vault or a failed margin check only
         makes it return 0, and the cash stays in the vault for a later harvest.
    @return uint256 Token units harvested.
    """
    return self._harvest()


@external
def cover(amount: uint256, recipient: address, subaccount: uint96) -> uint256:
    """
    @notice Pays up to `amount` token units into the vault cash of `(recipient, subaccount)`:
            `min(amount, token balance)` after a harvest. Never reverts for lack of funds;
            returns what it paid (possibly 0), and the caller socializes the rest.
    @dev Only the liquidator. Pays with `vault.deposit`, so the vault's own checks apply; a
         vault at its settlement deposit cap makes it revert with the vault's reason.
    @param amount Token units asked for.
    @param recipient Owner of the credited account (the insolvent auction's bidder).
    @param subaccount Subaccount of the credited account.
    @return uint256 Token units paid.
    """
    assert msg.sender == self.liquidator, "fund: not liquidator"
    if amount == 0:
        return 0
    self._harvest()
    paid: uint256 = min(amount, staticcall _ASSET.balanceOf(self))
    if paid != 0:
        assert extcall _ASSET.approve(VAULT, paid, default_return_value=True), "fund: approve failed"
        extcall IFundVault(VAULT).deposit(_ASSET.address, paid, subaccount, recipient)
    log Covered(recipient=recipient, subaccount=subaccount, requested=amount, paid=paid)
    return paid


# ---------------------------------------------------------------- owner


@external
def set_liquidator(liquidator: address):
    """
    @notice Sets the only caller of `cover`.
    @param liquidator A contract (the liquidation engine).
    """
    ownable._check_owner()
    assert liquidator.is_contract, "fund: liquidator not a contract"
    self.liquidator = liquidator
    log LiquidatorSet(liquidator=liquidator)


@external
def set_cooldown(cooldown: uint256, window: uint256):
    """
    @notice Sets the withdrawal cooldown and window (seconds, each 1 hour .. 30 days). Open
            requests are judged by the values in force when they are used.
    """
    ownable._check_owner()
    assert MIN_PERIOD <= cooldown and cooldown <= MAX_PERIOD, "fund: out of bounds"
    assert MIN_PERIOD <= window and window <= MAX_PERIOD, "fund: out of bounds"
    self.cooldown = cooldown
    self.window = window
    log CooldownSet(cooldown=cooldown, window=window)


# ---------------------------------------------------------------- views


@external
@view
def totalAssets() -> uint256:
    """
    @notice Token units the fund holds (its token balance; unharvested vault cash excluded).
    """
    return erc4626._total_assets()


@external
@view
def convertToShares(assets: uint256) -> uint256:
    """
    @notice Shares worth `assets` token units at the token-balance price (rounded down).
    """
    return erc4626._convert_to_shares(assets, False)


@external
@view
def convertToAssets(shares: uint256) -> uint256:
    """
    @notice Token units `shares` are worth at the token-balance price (rounded down).
    """
    return erc4626._convert_to_assets(shares, False)


@external
@view
def previewDeposit(assets: uint256) -> uint256:
    """
    @notice Shares `deposit(assets)` mints now: priced like `deposit`, unharvested cash included.
    """
    return self._to_shares_gross(assets, False)


@external
@view
def previewMint(shares: uint256) -> uint256:
    """
    @notice Token units `mint(shares)` takes now, unharvested cash included.
    """
    return self._to_assets_gross(shares, True)


@external
@view
def previewWithdraw(assets: uint256) -> uint256:
    """
    @notice Shares `withdraw(assets)` burns, priced as it is (token balance less the fund's
            part of a pending loss) on the token balance alone: exact when there is nothing
            to harvest, else an upper bound (a harvest first can only lower it).
    """
    return self._to_shares_exit(assets, True)


@external
@view
def previewRedeem(shares: uint256) -> uint256:
    """
    @notice Token units `redeem(shares)` pays, priced as it is (token balance less the fund's
            part of a pending loss) on the token balance alone: exact when there is nothing
            to harvest, else a lower bound (a harvest first can only raise it).
    """
    return self._to_assets_exit(shares, False)


@external
@view
def maxWithdraw(owner: address) -> uint256:
    """
    @notice Token units `owner` can withdraw now: 0 outside its request window, else what its
            redeemable shares are worth at the exit price (rounded down).
    """
    return self._to_assets_exit(self._ready_shares(owner), False)


@external
@view
def maxRedeem(owner: address) -> uint256:
    """
    @notice Shares `owner` can redeem now: 0 outside its request window, else its requested
            shares (never above its balance).
    """
    return self._ready_shares(owner)


@external
@view
def pending_income() -> uint256:
    """
    @notice Token units of the fund's vault cash that the next harvest would move (whole
            units; 0 if its cash is not positive).
    """
    return self._pending_income()


@external
@view
def withdrawal_window(owner: address) -> (uint256, uint256, uint256):
    """
    @notice `owner`'s open request: requested shares and the window's opening and closing
            unix times (s), at the current cooldown and window. All 0 without a request.
    """
    request: Request = self.requests[owner]
    if request.shares == 0:
        return 0, 0, 0
    ready_at: uint256 = request.requested_at + self.cooldown
    return request.shares, ready_at, ready_at + self.window


# ---------------------------------------------------------------- internals


@internal
def _harvest() -> uint256:
    """
    @dev Withdraws the fund's positive vault cash (whole token units) with a call that may
         fail: the vault reverts while paused, or if its margin check does. The amount is what
         the token balance grew by. The vault holds nothing back from the fund's withdrawal
         while a loss is pending (its hold-back would read `totalAssets`, locked here): the
         cash only moves to the balance that pays the loss first.
    """
    amount: uint256 = self._pending_income()
    if amount == 0:
        return 0
    before: uint256 = staticcall _ASSET.balanceOf(self)
    success: bool = raw_call(
        VAULT,
        abi_encode(
            _ASSET.address,
            amount,
            FUND_SUBACCOUNT,
            self,
            method_id=method_id("withdraw(address,uint256,uint96,address)"),
        ),
        revert_on_failure=False,
    )
    if not success:
        return 0
    after: uint256 = staticcall _ASSET.balanceOf(self)
    if after <= before:
        return 0
    # cannot underflow: checked just above
    harvested: uint256 = unsafe_sub(after, before)
    log Harvested(amount=harvested)
    return harvested


@internal
@view
def _pending_income() -> uint256:
    return staticcall IFundVault(VAULT).withdrawable(self, FUND_SUBACCOUNT, _ASSET.address)


@internal
@view
def _to_shares_gross(assets: uint256, roundup: bool) -> uint256:
    """
    @dev The module's `_convert_to_shares` (same virtual shares and asset) on the token
         balance plus unharvested vault cash: the price deposits pay.
    """
    return math._mul_div(
        assets,
        erc20.totalSupply + VIRTUAL_SHARES,
        erc4626._total_assets() + self._pending_income() + 1,
        roundup,
    )


@internal
@view
def _to_assets_gross(shares: uint256, roundup: bool) -> uint256:
    return math._mul_div(
        shares,
        erc4626._total_assets() + self._pending_income() + 1,
        erc20.totalSupply + VIRTUAL_SHARES,
        roundup,
    )


@internal
@view
def _exit_assets() -> uint256:
    """
    @dev The token units exits are priced on: the token balance less the part of the
         vault's pending loss the fund would cover, `A - min(A, ceil(pending_loss / scale))`
         (rounded toward the fund). `A` while no loss is pending.
    """
    assets: uint256 = erc4626._total_assets()
    pending: uint256 = staticcall IFundVault(VAULT).pending_loss()
    if pending == 0:
        return assets
    return assets - min(assets, math._ceil_div(pending, _SCALE))


@internal
@view
def _to_shares_exit(assets: uint256, roundup: bool) -> uint256:
    """
    @dev The module's `_convert_to_shares` (same virtual shares and asset) on `_exit_assets`:
         the price withdrawals pay (rounded up there).
    """
    return math._mul_div(assets, erc20.totalSupply + VIRTUAL_SHARES, self._exit_assets() + 1, roundup)


@internal
@view
def _to_assets_exit(shares: uint256, roundup: bool) -> uint256:
    return math._mul_div(shares, self._exit_assets() + 1, erc20.totalSupply + VIRTUAL_SHARES, roundup)


@internal
@view
def _ready_shares(owner: address) -> uint256:
    """
    @dev Shares `owner` may redeem now: its request if the window is open, else 0.
    """
    request: Request = self.requests[owner]
    if request.shares == 0:
        return 0
    ready_at: uint256 = request.requested_at + self.cooldown
    if block.timestamp < ready_at or block.timestamp > ready_at + self.window:
        return 0
    return min(request.shares, erc20.balanceOf[owner])


@internal
def _use_request(owner: address, shares: uint256):
    """
    @dev Spends `shares` of `owner`'s request; reverts outside its window or above it.
    """
    request: Request = self.requests[owner]
    assert request.shares != 0, "fund: no request"
    ready_at: uint256 = request.requested_at + self.cooldown
    assert block.timestamp >= ready_at, "fund: cooldown"
    assert block.timestamp <= ready_at + self.window, "fund: window passed"
    assert shares <= request.shares, "fund: above request"
    # cannot underflow: checked just above
    self.requests[owner].shares = unsafe_sub(request.shares, shares)


@internal
def _cap_request(owner: address):
    balance: uint256 = erc20.balanceOf[owner]
    if self.requests[owner].shares > balance:
        self.requests[owner].shares = balance
