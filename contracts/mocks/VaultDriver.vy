# pragma version ~=0.4.3
"""
@title Liquidator and clearing stand-in for the vault's socialization tests
@notice Forwards the liquidator's and clearing's vault calls from a contract, so a test can
        drive cash settlements, fraction transfers and socializations directly.
"""

from ..interfaces import IVault


@external
def settle_cash(vault: IVault, entries: DynArray[IVault.CashDelta, 8]):
    extcall vault.settle_cash(entries)


@external
def socialize(vault: IVault, amount: uint256, recipient: uint256, released: uint256 = 0) -> uint256:
    return extcall vault.socialize(amount, recipient, released)


@external
def reserve_loss(vault: IVault, added: uint256, released: uint256):
    extcall vault.reserve_loss(added, released)


@external
def transfer_fraction(vault: IVault, source: uint256, target: uint256, fraction: uint256):
    extcall vault.transfer_fraction(source, target, fraction, 0, 0)


@external
def set_frozen(vault: IVault, account: uint256, frozen: bool):
    extcall vault.set_frozen(account, frozen)
