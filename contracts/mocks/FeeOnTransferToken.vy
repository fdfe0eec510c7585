# pragma version ~=0.4.3
# pragma nonreentrancy off
"""
@title Hostile token: fee on transfer
@notice Burns `FEE_BPS` of every transfer, so the receiver gets less than was asked. The
        vault must measure what arrived and reject it.
"""

from snekmate.auth import ownable
from snekmate.tokens import erc20

initializes: ownable
initializes: erc20[ownable := ownable]

exports: (
    erc20.balanceOf,
    erc20.allowance,
    erc20.totalSupply,
    erc20.decimals,
    erc20.name,
    erc20.symbol,
    erc20.approve,
    erc20.mint,
    erc20.set_minter,
)

# @dev The fee burnt on every transfer, in basis points.
FEE_BPS: constant(uint256) = 100


@deploy
def __init__(decimals_: uint8):
    ownable.__init__()
    erc20.__init__("Fee Token", "FEE", decimals_, "Fee Token", "1")


@external
def transfer(to: address, amount: uint256) -> bool:
    self._transfer_with_fee(msg.sender, to, amount)
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    erc20._spend_allowance(owner, msg.sender, amount)
    self._transfer_with_fee(owner, to, amount)
    return True


@internal
def _transfer_with_fee(owner: address, to: address, amount: uint256):
    fee: uint256 = amount * FEE_BPS // 10_000
    erc20._burn(owner, fee)
    erc20._transfer(owner, to, amount - fee)
