"""Liquidation bot: on every block, discovers new accounts and runs the keeper's
liquidation task (start every due auction, mark insolvent ones, terminate cured ones, bid
when the discount beats ``CROSSMARGIN_KEEPER_BID_THRESHOLD``).

    silverback run liquidation --network ethereum:devnet:node --account <alias>

It also follows the liquidator's ``AuctionStarted`` events (auctions other keepers start),
so they count as live at once. Handler functions are plain functions, registered below,
so tests can call them directly.
"""

from __future__ import annotations

from ape import chain
from silverback import SilverbackBot

from bots.common import KeeperSlot, load_protocol, log_report, stop_cleanly

bot = SilverbackBot()
keeper = KeeperSlot(bot, "liquidation")
liquidator = load_protocol().liquidator.contract


def startup(_startup_state=None) -> dict:
    """Catches up with the events since the last run (from the keeper's state file)."""
    return log_report(keeper.get().discover())


def on_block(block) -> dict:
    k = keeper.get()
    discovery = k.discover(to_block=block.number)
    report = k.liquidate()
    if discovery.errors:
        report.errors = discovery.errors + report.errors
    return log_report(report)


def on_auction_started(log) -> dict:
    k = keeper.get()
    k.state.auctions.add(int(log.account))
    return {"auctions": len(k.state.auctions)}


bot.on_startup()(startup)
stop_cleanly(bot, keeper)
bot.on_(chain.blocks)(on_block)
bot.on_(liquidator.AuctionStarted)(on_auction_started)
