"""Typed client of the insurance fund (``contracts/InsuranceFund.vy``), an ERC-4626 vault of
the settlement asset with a withdrawal cooldown.

    from crossmargin.clients.fund import FundClient
    fund = FundClient(project.InsuranceFund.at(address), cm.token("USDC"))
    fund.deposit(lp, "1000")            # token units in human form, converted exactly
    fund.request_withdraw(lp)           # all of lp's shares; the window opens after the cooldown
    fund.cooldown_status(lp)            # CooldownStatus(state='cooling', ready_at=..., ...)
    fund.redeem(lp)                     # inside the window: everything requested

Asset amounts are human amounts of the settlement asset (``"1000.5"`` USDC), share amounts
human amounts of the share token (18 decimals for USDC); both are converted exactly (a value
with more decimals than the token has raises ``ValueError``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from ape import chain

from crossmargin.units import EXACT, Number, from_units, to_units

# Constructor defaults of the fund: share token name and symbol (snekmate limits them to 25
# and 5 characters) and the EIP-712 domain of its `permit`.
NAME = "crossmargin insurance"
SYMBOL = "cmINS"
EIP712_NAME = "crossmargin insurance"
EIP712_VERSION = "1"


def constructor_args(asset: Any, vault: Any) -> tuple:
    """Arguments of ``InsuranceFund.__init__`` for the settlement ``asset`` and ``vault``."""
    return (str(asset), str(vault), NAME, SYMBOL, EIP712_NAME, EIP712_VERSION)


CooldownState = Literal["none", "cooling", "open", "expired"]


@dataclass(frozen=True)
class CooldownStatus:
    """An owner's withdrawal request, as of ``at`` (a unix time, s).

    Attributes:
        state: ``none`` (no request or all used), ``cooling`` (before ``ready_at``), ``open``
            (``ready_at <= at <= expires_at``: withdraw or redeem now) or ``expired``.
        shares: Shares still requested (human units).
        ready_at: Opening of the window (unix s; 0 without a request).
        expires_at: Its last second (unix s; 0 without a request).
        at: The time the state refers to.
    """

    state: CooldownState
    shares: Decimal
    ready_at: int
    expires_at: int
    at: int

    @property
    def seconds_to_ready(self) -> int:
        return max(0, self.ready_at - self.at)


class FundClient:
    """Deposits, cooldown withdrawals, income and share price of the insurance fund."""

    def __init__(self, contract: Any, token: Any):
        """``token`` is the settlement asset's ``crossmargin.clients.protocol.Token``."""
        self.contract = contract
        self.token = token
        self.share_decimals = int(contract.decimals())

    @property
    def address(self) -> str:
        return self.contract.address

    # ------------------------------------------------------------------ conversions

    def asset_units(self, amount: Number) -> int:
        return to_units(amount, self.token.decimals)

    def share_units(self, shares: Number) -> int:
        return to_units(shares, self.share_decimals)

    def _assets(self, units: int) -> Decimal:
        return from_units(units, self.token.decimals)

    def _shares(self, units: int) -> Decimal:
        return from_units(units, self.share_decimals)

    # ------------------------------------------------------------------ LPs

    def approve(self, sender: Any, amount: Number | None = None):
        """Approves the fund for ``amount`` (default: unlimited) of the settlement asset."""
        units = 2**256 - 1 if amount is None else self.asset_units(amount)
        return self.token.contract.approve(self.address, units, sender=sender)

    def deposit(self, sender: Any, amount: Number, receiver: Any = None, approve: bool = True):
        """Deposits ``amount`` of the settlement asset; approves the exact shortfall first."""
        units = self.asset_units(amount)
        if approve and self.token.contract.allowance(sender, self.address) < units:
            self.token.contract.approve(self.address, units, sender=sender)
        return self.contract.deposit(units, receiver or sender, sender=sender)

    def mint(self, sender: Any, shares: Number, receiver: Any = None, approve: bool = True):
        """Mints exactly ``shares``; approves what they cost (``previewMint``) first."""
        units = self.share_units(shares)
        if approve:
            cost = self.contract.previewMint(units)
            if self.token.contract.allowance(sender, self.address) < cost:
                self.token.contract.approve(self.address, cost, sender=sender)
        return self.contract.mint(units, receiver or sender, sender=sender)

    def request_withdraw(self, sender: Any, shares: Number | None = None):
        """Starts the cooldown for ``shares`` (default: all of the sender's shares)."""
        units = self.contract.balanceOf(sender) if shares is None else self.share_units(shares)
        return self.contract.request_withdraw(units, sender=sender)

    def redeem(self, sender: Any, shares: Number | None = None, receiver: Any = None, owner: Any = None):
        """Redeems ``shares`` of ``owner`` (default: the sender; default shares: everything
        the owner's request still covers, which the window must allow when the transaction
        runs)."""
        owner = owner or sender
        if shares is None:
            units = min(self.contract.requests(owner).shares, self.contract.balanceOf(owner))
        else:
            units = self.share_units(shares)
        return self.contract.redeem(units, receiver or sender, owner, sender=sender)

    def withdraw(self, sender: Any, amount: Number, receiver: Any = None, owner: Any = None):
        """Withdraws exactly ``amount`` of the settlement asset from ``owner``'s shares."""
        return self.contract.withdraw(self.asset_units(amount), receiver or sender, owner or sender, sender=sender)

    def harvest(self, sender: Any):
        """Moves the fund's vault cash into its balance (anyone; never reverts for the vault)."""
        return self.contract.harvest(sender=sender)

    # ------------------------------------------------------------------ views

    def total_assets(self) -> Decimal:
        """The fund's token balance (unharvested vault cash excluded)."""
        return self._assets(self.contract.totalAssets())

    def total_shares(self) -> Decimal:
        return self._shares(self.contract.totalSupply())

    def shares_of(self, owner: Any) -> Decimal:
        return self._shares(self.contract.balanceOf(owner))

    def value_of(self, owner: Any) -> Decimal:
        """What ``owner``'s shares are worth now (rounded down to the asset's unit)."""
        return self._assets(self.contract.convertToAssets(self.contract.balanceOf(owner)))

    def share_price(self) -> Decimal:
        """Assets per whole share, exactly as the fund converts (virtual shares and asset
        included): ``(totalAssets + 1) / (totalSupply + 10**offset)`` in human units."""
        offset = self.share_decimals - self.token.decimals
        assets = self.contract.totalAssets() + 1
        shares = self.contract.totalSupply() + 10**offset
        return EXACT.divide(EXACT.multiply(Decimal(assets), EXACT.power(10, offset)), Decimal(shares))

    def pending_income(self) -> Decimal:
        """Vault cash of the fund the next harvest would move (whole token units)."""
        return self._assets(self.contract.pending_income())

    def max_redeem(self, owner: Any) -> Decimal:
        return self._shares(self.contract.maxRedeem(owner))

    def max_withdraw(self, owner: Any) -> Decimal:
        return self._assets(self.contract.maxWithdraw(owner))

    def cooldown_status(self, owner: Any, at: int | None = None) -> CooldownStatus:
        """``owner``'s request at unix time ``at`` (default: the next block's timestamp, which
        is when a transaction sent now would run)."""
        at = chain.pending_timestamp if at is None else at
        shares, ready_at, expires_at = self.contract.withdrawal_window(owner)
        state: CooldownState
        if shares == 0:
            state = "none"
        elif at < ready_at:
            state = "cooling"
        elif at <= expires_at:
            state = "open"
        else:
            state = "expired"
        return CooldownStatus(state, self._shares(shares), ready_at, expires_at, at)

    # ------------------------------------------------------------------ owner

    def set_cooldown(self, sender: Any, cooldown: int, window: int):
        """Owner: cooldown and window in seconds (each 1 hour .. 30 days)."""
        return self.contract.set_cooldown(cooldown, window, sender=sender)

    def set_liquidator(self, sender: Any, liquidator: Any):
        """Owner: the only caller of ``cover`` (a contract)."""
        return self.contract.set_liquidator(liquidator, sender=sender)
