"""Keepers of the protocol (SPECIFICATION.md §7, §8, §10): the one logic module behind
``ape run keeper`` and the Silverback bots in ``bots/``.

    from crossmargin.keeper import Keeper, KeeperConfig
    keeper = Keeper(cm, account, KeeperConfig(state_file=Path(".keeper/local.json")))
    for report in keeper.run_once():          # discover, liquidate, settle, refresh
        print(report.summary())

Tasks (each a method returning a small typed report of what it did or, in a dry run,
would do), one module each over the shared core (:mod:`crossmargin.keeper.core`: state,
sender, journal, loop):

- :meth:`Keeper.discover`: accounts from the vault's ``Deposit``/``Move`` and the
  clearinghouse's ``Traded`` events (maker and taker), auctions from the liquidator's, listed
  options (the markets contract's ``InstrumentListed``) and who may hold them, read
  incrementally from the last processed block;
- :meth:`Keeper.liquidate`: screens every known account (``engine.margins``, 64 a call),
  starts every due auction not running, marks insolvent ones, terminates auctions back
  above the buffer and bids when the quoted discount beats the threshold;
- :meth:`Keeper.settle`: settles expired options of known holders, with the round hint of
  the first oracle round at or after expiry;
- :meth:`Keeper.refresh`: stores the risk arrays of listed, held options whose stored epoch
  is stale;
- :meth:`Keeper.move_prices`: random-walks the mock spot feeds (devnets only).

Robustness. Every chain action is preflighted against the latest state (one execution
through :class:`crossmargin.clients.sender.TxSender`) before it is sent: that is the on-chain
confirmation, and a revert whose reason shows the work is done or no longer needed
(:data:`NOTHING_TO_DO`) is logged as ``skipped``, never raised. Node errors are retried a
bounded number of times per call and per task; a task that still fails is reported and the
next task runs. A JSON state file keeps the discovery cursor, the known accounts, auctions
and option holders, and every transaction sent (key, nonce, hash, outcome), written before
sending (its nonce and hash). On start-up, and before each action, that journal is
reconciled with the node (:meth:`Keeper.reconcile`): an entry whose nonce the chain has
used is resolved from its receipt (``done``/``reverted``), one at or above the node's pending
nonce never reached the node and is dropped (the work is done again), and only one in the
node's pool in between is in flight. So after any crash the next sweep acts on every due
account exactly once: never twice, and never skipped.

Screening uses the engine's batch view, not the reference model: one ``eth_call`` values 64
accounts, while the model needs about ten reads per account. The model (bit-exact, see
:mod:`crossmargin.model.margin`) is used where one load serves many valuations: the
what-if ranking :meth:`Keeper.liquidation_distance` (the spot move that would make an account
liquidatable) and the risk-array epoch check of :meth:`Keeper.refresh`.
"""

from crossmargin.keeper.core import KeeperCore
from crossmargin.keeper.discovery import Discovery
from crossmargin.keeper.liquidation import Liquidation
from crossmargin.keeper.prices import DEV_NETWORKS, PriceMover
from crossmargin.keeper.refresh import Refresh
from crossmargin.keeper.reports import (
    AccountHealth,
    Action,
    AuctionStatus,
    DiscoveryReport,
    Distance,
    LiquidationReport,
    PriceReport,
    RefreshReport,
    SettlementReport,
    TaskReport,
)
from crossmargin.keeper.screening import Screening
from crossmargin.keeper.settlement import Settlement
from crossmargin.keeper.state import (
    NOTHING_TO_DO,
    KeeperConfig,
    KeeperState,
    RefusedError,
    SettlementBlocked,
    describe_account,
)

__all__ = [
    "DEV_NETWORKS",
    "NOTHING_TO_DO",
    "AccountHealth",
    "Action",
    "AuctionStatus",
    "DiscoveryReport",
    "Distance",
    "Keeper",
    "KeeperConfig",
    "KeeperState",
    "LiquidationReport",
    "PriceReport",
    "RefreshReport",
    "RefusedError",
    "SettlementBlocked",
    "SettlementReport",
    "TaskReport",
    "describe_account",
]


class Keeper(Discovery, Liquidation, Settlement, Refresh, PriceMover, Screening, KeeperCore):
    """Keeper tasks over one deployment, acting from one account.

    Args:
        cm: The :class:`crossmargin.clients.protocol.Protocol`.
        sender: An ape account that signs (None: dry run only).
        config: See :class:`KeeperConfig`.
        log: Where progress lines go (default: nowhere).
    """
