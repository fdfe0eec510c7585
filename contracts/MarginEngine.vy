# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title crossmargin margin engine
@notice Values an account and its margin requirements, in WAD of the settlement asset
        (1 cash = 1 USD; the settlement asset's own USD feed is a circuit breaker that must
        read within its bounds for any new risk to be taken).

        This version values the vault side of an account (cash and haircut collateral):
            equity = cash + sum_a floor(balance_a * price_a)
            MM     = sum_a ceil(value_a * mm_haircut_a)
            IM     = sum_a ceil(value_a * im_haircut_a)
        Values round down and requirements round up, so rounding favours the protocol.
        Positions and the scenario grid of SPECIFICATION.md section 6 extend this engine.
"""

from snekmate.auth import ownable
from snekmate.auth import ownable_2step
from snekmate.utils import math

from interfaces import IVault

initializes: ownable
initializes: ownable_2step[ownable := ownable]

exports: (
    ownable_2step.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
)


interface IOracleRouter:
    def price(key: bytes32) -> uint256: view
    def check_sequencer() -> bool: view


WAD: constant(uint256) = 10**18
MAX_ASSETS: constant(uint256) = 16


struct Margin:
    # cash + collateral value (WAD, signed)
    equity: int256
    # initial and maintenance requirements (WAD)
    initial: uint256
    maintenance: uint256


# @dev The vault whose balances this engine values.
VAULT: public(immutable(IVault))
# @dev The oracle router every price is read through.
ORACLE: public(immutable(IOracleRouter))
# @dev Oracle key of the settlement asset's USD feed (depeg circuit breaker), or empty.
settlement_key: public(bytes32)


event SettlementKeySet:
    key: bytes32


@deploy
def __init__(vault: IVault, oracle: IOracleRouter, settlement_key: bytes32):
    ownable.__init__()
    ownable_2step.__init__()
    VAULT = vault
    ORACLE = oracle
    self.settlement_key = settlement_key
    log SettlementKeySet(key=settlement_key)


@external
def set_settlement_key(key: bytes32):
    """
    @notice Sets the oracle key of the settlement asset's USD feed (empty disables it).
    """
    ownable._check_owner()
    self.settlement_key = key
    log SettlementKeySet(key=key)


@external
@view
def margin(account: uint256) -> Margin:
    """
    @notice Equity, initial and maintenance requirement of `account` (all WAD).
    """
    return self._margin(account)


@external
@view
def initial_health(account: uint256) -> int256:
    """
    @notice `equity - IM` (WAD); new risk and withdrawals need it >= 0. Reverts while the
            L2 sequencer is down or the settlement asset's feed is bad.
    """
    self._check_new_risk()
    m: Margin = self._margin(account)
    return m.equity - convert(m.initial, int256)


@external
@view
def maintenance_health(account: uint256) -> int256:
    """
    @notice `equity - MM` (WAD); the account is liquidatable when it is negative. Never
            gated on the sequencer, so liquidation can always proceed.
    """
    m: Margin = self._margin(account)
    return m.equity - convert(m.maintenance, int256)


@internal
@view
def _check_new_risk():
    # both calls revert with the oracle's reason when the check fails
    ok: bool = staticcall ORACLE.check_sequencer()
    key: bytes32 = self.settlement_key
    if key != empty(bytes32):
        stable: uint256 = staticcall ORACLE.price(key)


@internal
@view
def _margin(account: uint256) -> Margin:
    cash: int256 = 0
    lines: DynArray[IVault.Collateral, MAX_ASSETS] = []
    cash, lines = staticcall VAULT.account_state(account)
    equity: int256 = cash
    initial: uint256 = 0
    maintenance: uint256 = 0
    for line: IVault.Collateral in lines:
        value: uint256 = math._mul_div(line.balance, staticcall ORACLE.price(line.price_key), WAD, False)
        equity += convert(value, int256)
        maintenance += math._mul_div(value, line.mm_haircut, WAD, True)
        initial += math._mul_div(value, line.im_haircut, WAD, True)
    return Margin(equity=equity, initial=initial, maintenance=maintenance)
