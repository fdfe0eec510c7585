"""Risk-array bot: on every block, stores the risk arrays of held, unexpired options whose
stored epoch is stale (a new oracle round, or older than the engine's maximum age), so
trades and liquidations find them current instead of computing them.

    silverback run risk --network ethereum:devnet:node --account <alias>

On devnets, ``CROSSMARGIN_KEEPER_PRICES=1`` also makes it the mock price mover: a
random-walk step of the spot feeds on a cron schedule (``CROSSMARGIN_KEEPER_PRICES_CRON``,
default every minute; not per block, as each push mines a block on an automining node).
The mover refuses to run off devnets or on feeds that are not mocks.
"""

from __future__ import annotations

import os

from ape import chain
from silverback import SilverbackBot

from bots.common import KeeperSlot, log_report, stop_cleanly

bot = SilverbackBot()
keeper = KeeperSlot(bot, "risk")
MOVE_PRICES = os.environ.get("CROSSMARGIN_KEEPER_PRICES", "").lower() in ("1", "true", "yes")
PRICES_CRON = os.environ.get("CROSSMARGIN_KEEPER_PRICES_CRON", "* * * * *")


def startup(_startup_state=None) -> dict:
    return log_report(keeper.get().discover())


def on_block(block) -> dict:
    k = keeper.get()
    k.discover(to_block=block.number)
    return log_report(k.refresh())


def move_prices(_time=None) -> dict:
    return log_report(keeper.get().move_prices())


bot.on_startup()(startup)
stop_cleanly(bot, keeper)
bot.on_(chain.blocks)(on_block)
if MOVE_PRICES:
    bot.cron(PRICES_CRON)(move_prices)
