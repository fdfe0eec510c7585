# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title Margin engine stand-in with a settable health
@notice Lets the vault's margin-check wiring be tested for a negative health before
        positions exist to produce one.
"""

# @dev What `initial_health` answers for every account (WAD).
health: public(int256)


@external
def set_health(health: int256):
    self.health = health


@external
def check_initial(account: uint256) -> int256:
    return self.health
