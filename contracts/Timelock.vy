# pragma version ~=0.4.3
"""
@title crossmargin timelock
@notice The owner of every protocol contract outside local devnets: each wiring change
        (vault `set_clearing`, `set_liquidator`, `set_margin_engine`, ..., the router's
        `set_feed`, the fund's `set_liquidator`) and each risk-parameter change is
        scheduled here and runs only after `get_minimum_delay` seconds, in the open,
        so users can leave before a change they do not accept; a proposer (who is also
        canceller) can cancel it until then. snekmate's `timelock_controller`, deployed
        as it is: nothing here is hand-written beyond the constructor.
@dev `admin_` may be empty (the timelock administers itself); deploy passes none.
"""

from snekmate.auth import access_control
from snekmate.governance import timelock_controller

initializes: access_control
initializes: timelock_controller[access_control := access_control]

exports: timelock_controller.__interface__


@deploy
@payable
def __init__(
    minimum_delay_: uint256,
    proposers_: DynArray[address, 128],
    executors_: DynArray[address, 128],
    admin_: address,
):
    """
    @param minimum_delay_ The least delay (s) of a scheduled operation.
    @param proposers_ Accounts that schedule and cancel operations.
    @param executors_ Accounts that execute ready operations (empty address: anyone).
    @param admin_ An optional admin that may grant roles without delay (empty: none).
    """
    access_control.__init__()
    timelock_controller.__init__(minimum_delay_, proposers_, executors_, admin_)
