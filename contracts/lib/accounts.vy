# pragma version ~=0.4.3
"""
@title Account identifiers
@notice An account is `(owner, subaccount)`. It is stored under one `uint256` key:
        `owner << 96 | subaccount`, so a key round-trips to its owner and never collides.
"""


# @dev Number of low bits that hold the subaccount id.
SUB_BITS: constant(uint256) = 96


@internal
@pure
def _id(owner: address, subaccount: uint96) -> uint256:
    return (convert(owner, uint256) << SUB_BITS) | convert(subaccount, uint256)


@internal
@pure
def _owner(account: uint256) -> address:
    return convert(convert(account >> SUB_BITS, uint160), address)
