"""Settlement bot: on every block, settles expired options of every known holder at the
first oracle round at or after expiry (the keeper finds the round hint). An option whose
feed has no round after expiry yet is retried on later blocks.

    silverback run settlement --network ethereum:devnet:node --account <alias>

It follows the markets contract's ``InstrumentListed`` events so new options are known at once.
"""

from __future__ import annotations

from ape import chain
from silverback import SilverbackBot

from bots.common import KeeperSlot, load_protocol, log_report, stop_cleanly

bot = SilverbackBot()
keeper = KeeperSlot(bot, "settlement")
markets = load_protocol().markets.contract


def startup(_startup_state=None) -> dict:
    return log_report(keeper.get().discover())


def on_block(block) -> dict:
    k = keeper.get()
    k.discover(to_block=block.number)
    return log_report(k.settle())


def on_listed(log) -> dict:
    k = keeper.get()
    k.discover(to_block=log.block_number)
    return {"options": len(k.state.options)}


bot.on_startup()(startup)
stop_cleanly(bot, keeper)
bot.on_(chain.blocks)(on_block)
bot.on_(markets.InstrumentListed)(on_listed)
