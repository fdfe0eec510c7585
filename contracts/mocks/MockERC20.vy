# pragma version ~=0.4.3
# pragma nonreentrancy off
"""
@title Mock ERC-20 for tests and devnets
@notice snekmate's ERC-20 (with EIP-2612 permit) exported as is. The deployer holds the
        minter role; `set_minter` grants it to faucets and test actors. Decimals are set at
        deployment so 6, 8 and 18 decimal collateral can all be exercised.
"""

from snekmate.auth import ownable
from snekmate.tokens import erc20

initializes: ownable
initializes: erc20[ownable := ownable]

exports: erc20.__interface__


@deploy
def __init__(name_: String[25], symbol_: String[5], decimals_: uint8):
    ownable.__init__()
    erc20.__init__(name_, symbol_, decimals_, name_, "1")
