"""The devnet price mover: a random walk of the mock spot feeds, and a re-push of the other
mock feeds before they go stale. Refused off a devnet or on a feed that is not a mock."""

from __future__ import annotations

import math
import random
from decimal import Decimal
from typing import Any

from ape import chain, networks

from crossmargin.clients.sender import Call
from crossmargin.keeper.core import KeeperCore
from crossmargin.keeper.reports import PriceReport
from crossmargin.keeper.state import RefusedError
from crossmargin.units import key

# Networks whose feeds may be mocks a keeper pushes to (same list as crossmargin.cli).
DEV_NETWORKS = ("local", "devnet", "devnet-fork")


class PriceMover(KeeperCore):
    """:meth:`move_prices` (devnets only)."""

    def mock_feeds(self) -> dict[str, Any]:
        """The manifest's feeds the sender may push, by key. Raises :class:`RefusedError`
        off a devnet or when a feed is not a mock aggregator (e.g. a real Chainlink feed)."""
        network = networks.provider.network.name
        if network not in DEV_NETWORKS:
            raise RefusedError(f"the price mover only runs on devnets {DEV_NETWORKS}, not {network!r}")
        if self.sender_account is None:
            raise RefusedError("the price mover needs a sender")
        feeds = {}
        for name in self.cm.manifest.feeds:
            aggregator = self.cm.oracle.aggregator(name)
            try:
                pusher = aggregator.is_pusher(self.sender_account.address)
            except Exception as error:  # noqa: BLE001 - not a mock
                raise RefusedError(f"feed {name} is not a mock aggregator ({error})") from error
            if not pusher:
                raise RefusedError(f"{self.sender_account.address} may not push feed {name}")
            feeds[name] = aggregator
        return feeds

    def move_prices(self) -> PriceReport:
        """One random-walk step of every spot feed (log-normal, ``price_step`` sd, kept
        within the router's bounds); the other mock feeds are re-pushed unchanged when older
        than half their heartbeat, so devnet prices never go stale."""
        return self._run_task(PriceReport("prices"), self._move_prices)

    def _move_prices(self, report: PriceReport) -> None:
        feeds = self.mock_feeds()
        if not hasattr(self, "_rng"):
            self._rng = random.Random(self.config.seed)
        engine, router = self.cm.engine.contract, self.cm.oracle.contract
        spot_keys = {bytes(engine.spot_key(u)).rstrip(b"\0").decode() for u in self.cm.manifest.underlyings.values()}
        now = self._read(lambda: chain.pending_timestamp)
        calls, targets = [], []
        for name, feed in sorted(feeds.items()):
            _rid, answer, _s, updated_at, _ = self._read(lambda f=feed: f.latestRoundData())
            config = self._read(lambda n=name: router.feeds(key(n)))
            decimals = self._read(lambda f=feed: f.decimals())
            if name in spot_keys:
                step = self._rng.gauss(0.0, self.config.price_step)
                lo = -(-config.min_answer // 10 ** (18 - decimals))
                hi = config.max_answer // 10 ** (18 - decimals)
                new = min(max(int(answer * math.exp(step)), lo), hi)
            elif now - updated_at > config.heartbeat // 2:
                new = answer
            else:
                continue
            report.prices[name] = Decimal(new) / Decimal(10**decimals)
            calls.append(Call(feed.push, (new,), f"push:{name}:{now}"))
            targets.append(name)
        self._act(report, "push", calls, targets)
