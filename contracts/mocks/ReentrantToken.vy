# pragma version ~=0.4.3
# pragma nonreentrancy off
"""
@title Hostile token: re-enters its caller
@notice On every `transfer`/`transferFrom` it calls `target` with the armed calldata before
        moving the tokens, and records whether that re-entrant call succeeded. A correct
        vault makes it fail (reentrancy lock) and still accounts the outer call exactly.
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

# @dev The contract the hook calls back into (the vault under test); empty = disarmed.
target: public(address)
# @dev The calldata of the re-entrant call.
payload: public(Bytes[512])
# @dev How many re-entrant calls were attempted, and how many of them succeeded.
attempts: public(uint256)
successes: public(uint256)


@deploy
def __init__(decimals_: uint8):
    ownable.__init__()
    erc20.__init__("Reentrant Token", "RNT", decimals_, "Reentrant Token", "1")


@external
def arm(target: address, payload: Bytes[512]):
    """
    @notice Arms the hook. The token also approves `target` for its own balance, so a
            re-entrant deposit or withdrawal would succeed if the target let it in.
    """
    self.target = target
    erc20._approve(self, target, max_value(uint256))
    self.payload = payload


@external
def transfer(to: address, amount: uint256) -> bool:
    self._hook()
    erc20._transfer(msg.sender, to, amount)
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    self._hook()
    erc20._spend_allowance(owner, msg.sender, amount)
    erc20._transfer(owner, to, amount)
    return True


@internal
def _hook():
    if self.target == empty(address):
        return
    self.attempts += 1
    ok: bool = raw_call(self.target, self.payload, revert_on_failure=False)
    if ok:
        self.successes += 1
