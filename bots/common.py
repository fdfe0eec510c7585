"""What the keeper bots share: the deployed protocol and one :class:`Keeper` per bot.

A bot runs the same ``Keeper`` methods as ``ape run keeper``, on Silverback's triggers.
Its keeper is configured from the environment (:meth:`KeeperConfig.from_env`):

- ``CROSSMARGIN_KEEPER_<FIELD>`` for every field of :class:`KeeperConfig`: ``DRY_RUN=1``,
  ``BID_THRESHOLD=0.05`` or ``5%`` (``none``: never bid), ``MAX_BID_FRACTION``,
  ``BIDDER_SUBACCOUNT`` (it needs vault cash to pay for what it buys), ``START_BLOCK``,
  ``BATCH_SIZE``, ``LOG_CHUNK``, ``REFRESH_BATCH``, ``ATTEMPTS``, ``RETRY_DELAY``, ``WORKERS``,
  ``PRICE_STEP``, ``SEED``, ``NEAREST``;
- ``CROSSMARGIN_KEEPER_STATE_FILE`` (default ``.keeper/<bot>-<network>.json``): the state
  that makes a restarted bot resume discovery where it stopped and never re-send what it
  sent (Silverback's own state snapshot only holds block numbers);
- ``CROSSMARGIN_MANIFEST``: a deployment manifest to use instead of the network's.

The signer is Silverback's (``--account``); without one the keeper only dry-runs. Give each
bot its own account: they run as separate processes and each numbers its own transactions.

SIGTERM (systemd, docker) and SIGINT stop a bot cleanly: Silverback halts its tasks and runs
the bot's shutdown task (:func:`stop_cleanly`), which saves the keeper's state and logs one
line (``liquidation bot: stopped (keeper state saved to ...)``); the process exits 0.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from ape import networks
from ape.logging import logger
from silverback import SilverbackBot

from crossmargin.clients.protocol import Protocol
from crossmargin.keeper import Keeper, KeeperConfig
from crossmargin.ops.manifest import Manifest


def load_protocol() -> Protocol:
    """The protocol of ``CROSSMARGIN_MANIFEST``, or of the connected network's manifest."""
    path = os.environ.get("CROSSMARGIN_MANIFEST")
    return Protocol(Manifest.load(Path(path))) if path else Protocol.load()


class KeeperSlot:
    """The bot's keeper, built on first use (after Silverback connected and loaded the
    signer); tests put their own in with :meth:`set`."""

    def __init__(self, bot, name: str):
        self.bot = bot
        self.name = name
        self._keeper: Keeper | None = None

    def get(self) -> Keeper:
        if self._keeper is None:
            config = KeeperConfig.from_env()
            if config.state_file is None:
                network = networks.provider.network.name
                config = replace(config, state_file=Path(".keeper") / f"{self.name}-{network}.json")
            self._keeper = Keeper(load_protocol(), self.bot.signer, config, log=logger.info)
        return self._keeper

    def set(self, keeper: Keeper) -> None:
        self._keeper = keeper

    @property
    def built(self) -> Keeper | None:
        """The keeper if it was built (None before first use)."""
        return self._keeper


def log_report(report) -> dict:
    """Logs a task report (errors as errors) and returns its metrics for Silverback."""
    if report.errors:
        logger.error(report.summary())
    elif report.actions:
        logger.info(report.summary())
    return report.metrics()


def stop_cleanly(bot: SilverbackBot, slot: KeeperSlot) -> None:
    """Registers the bot's shutdown: save the keeper's state, log one line, and end the
    block and event pollers so the process exits.

    Silverback 0.7 halts its tasks on SIGTERM, but its polling runner reads ape's endless
    ``poll_blocks``/``poll_logs`` generators in executor threads, and ``asyncio.run`` then
    waits for those threads forever (the bot "ignores" SIGTERM). Dropping the provider's web3
    connection, as the very last step of the shutdown, makes each poller's next request
    raise, so the threads end and the process exits 0.
    """

    def shutdown() -> None:
        where = ""
        if (keeper := slot.built) is not None:
            keeper.save()
            where = f" (keeper state saved to {keeper.config.state_file})"
        logger.info(f"{slot.name} bot: stopping{where}")

    def end_pollers(_state=None) -> None:
        provider = networks.active_provider
        if provider is not None and getattr(provider, "_web3", None) is not None:
            provider._web3 = None  # the pollers' next request raises ProviderNotConnectedError
        logger.info(f"{slot.name} bot: stopped")

    bot.on_shutdown()(shutdown)
    bot.on_worker_shutdown()(end_pollers)
