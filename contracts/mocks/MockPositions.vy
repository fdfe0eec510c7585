# pragma version ~=0.4.3
"""
@title A clearinghouse stand-in for the lens's bound on `positions`
@notice `positions` returns 602 words (19,264 bytes), more than the lens takes in.
"""


@external
@view
def perp_mask(account: uint256) -> uint256:
    """
    @notice No perps.
    """
    return 0


@external
@view
def positions(account: uint256) -> DynArray[uint256, 600]:
    """
    @notice 600 zero words: an oversized return.
    """
    words: DynArray[uint256, 600] = []
    for i: uint256 in range(600):
        words.append(0)
    return words
