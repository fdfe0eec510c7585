# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title Margin engine stand-in for the exchange
@notice Records the last `IEngine.Fill` it was given and counts the calls, or reverts with
        a set reason, so the exchange is tested on its own.
"""

from ..interfaces import IEngine

implements: IEngine


# @dev The fill of the last successful `trade`.
last_fill: public(IEngine.Fill)
# @dev Number of successful `trade` calls.
trades: public(uint256)
# @dev When non-empty, `trade` reverts with this reason.
revert_reason: public(String[64])


@external
def trade(fill: IEngine.Fill):
    reason: String[64] = self.revert_reason
    if len(reason) != 0:
        raise reason
    self.last_fill = fill
    self.trades += 1


@external
def set_revert(reason: String[64]):
    """
    @notice Makes `trade` revert with `reason` (empty: stop reverting).
    """
    self.revert_reason = reason
