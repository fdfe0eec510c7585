"""Screening: every known account's margin from the engine's batch view (64 accounts an
``eth_call``), the liquidation reads when a feed is broken, the scenario hint of a start,
and the what-if ranking from the reference model (:meth:`Screening.liquidation_distance`:
the spot move that would make an account liquidatable)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import replace
from decimal import Decimal

from ape import chain
from eth_utils import to_checksum_address

from crossmargin.clients.sender import is_transient
from crossmargin.keeper.core import KeeperCore
from crossmargin.keeper.reports import AccountHealth, Distance
from crossmargin.keeper.state import MASK96, describe_account
from crossmargin.model import margin as model
from crossmargin.units import SUB_BITS

# The oracle reasons that a broken feed gives every valuation reading it; the liquidation
# reads (bit 0 of a `refresh_bound` hint) value through them instead (SPECIFICATION.md).
FEED_FAILURES = re.compile(r"oracle: (stale price|price out of bounds|non-positive price)")
LIQUIDATION_READS = 1


class Screening(KeeperCore):
    """:meth:`screen` and the model's what-if views."""

    def screen(self, accounts: Iterable[int] | None = None) -> list[AccountHealth]:
        """Margins of ``accounts`` (default: every known one) from the engine's batch view,
        ``batch_size`` a call, batches read concurrently. A batch that fails for a reason
        other than the node is split until the failing account is isolated and dropped."""
        ids = sorted(self.state.accounts if accounts is None else set(accounts))
        size = max(1, min(self.config.batch_size, 64))
        batches = [ids[i : i + size] for i in range(0, len(ids), size)]
        parts = self._parallel(self._screen_batch, batches)
        return [h for part in parts for h in part]

    def _screen_batch(self, ids: list[int]) -> list[AccountHealth]:
        try:
            rows = self._eth_call(self.cm.engine.contract.margins, ids, types="(int256,uint256,uint256)[]")
        except Exception as error:  # noqa: BLE001 - isolate the account that breaks the batch
            if is_transient(error):
                raise
            if len(ids) == 1:
                if FEED_FAILURES.search(str(error)):
                    return self._screen_degraded(ids, error)
                self.log(f"cannot value {describe_account(ids[0])}: {error}")
                return []
            # the first and the last account each failing the same way alone: the cause is
            # global (a stale oracle, say) and every account would fail; report it instead
            # of splitting down to single accounts
            if all(self._fails_alike(a, error) for a in (ids[0], ids[-1])):
                if FEED_FAILURES.search(str(error)):
                    return self._screen_degraded(ids, error)
                raise error from None
            half = len(ids) // 2
            return self._screen_batch(ids[:half]) + self._screen_batch(ids[half:])
        return [AccountHealth(a, e, i, m) for a, (e, i, m) in zip(ids, rows, strict=True)]

    def _screen_degraded(self, ids: list[int], error: BaseException) -> list[AccountHealth]:
        """Margins as a liquidation values them while a feed is broken: ``refresh_bound``
        with bit 0 (the liquidation reads: a stale round used as is, an answer out of bounds
        clamped into them) through ``eth_call``, one account a call, so that a crash with a
        stale or out-of-bound feed still starts every due auction."""
        reason = FEED_FAILURES.search(str(error)).group(0)
        if reason not in self._degraded:
            self._degraded.append(reason)
            self.log(f"{reason}: screening with the liquidation reads")

        def margin(account: int) -> AccountHealth | None:
            try:
                e, i, m = self._eth_call(
                    self.cm.engine.contract.refresh_bound, account, LIQUIDATION_READS, types="(int256,uint256,uint256)"
                )
            except Exception as failure:  # noqa: BLE001 - one account must not stop the sweep
                if is_transient(failure):
                    raise
                self.log(f"cannot value {describe_account(account)}: {failure}")
                return None
            return AccountHealth(account, e, i, m)

        return [h for h in self._parallel(margin, ids) if h is not None]

    def _hint(self, account: int) -> int:
        """``Engine.hint`` through raw ``eth_call``: byte u the worst scenario of underlying u
        (0, no hint, if the view fails: the start then values every scenario)."""
        try:
            risks = self._eth_call(self.cm.engine.contract.risk, account, types="(uint256,uint256,uint256,int256[])[]")
        except Exception as error:  # noqa: BLE001 - the start without a hint still works
            if is_transient(error):
                raise
            return 0
        return model.scenario_hint(model.UnderlyingRisk(*r) for r in risks)

    def _fails_alike(self, account: int, error: BaseException) -> bool:
        try:
            self._eth_call(self.cm.engine.contract.margins, [account], types="(int256,uint256,uint256)[]")
        except Exception as probe:  # noqa: BLE001 - compared
            return str(probe) == str(error)
        return False

    def snapshots(self, accounts: Iterable[int], block_id: int | None = None) -> dict[int, tuple]:
        """The model's snapshot (:func:`crossmargin.model.margin.snapshot`) of each account
        at one block (default: the head): one Lens call per account, whatever its book."""
        head = chain.blocks.head.number if block_id is None else block_id
        out = {}
        for account in accounts:
            owner = to_checksum_address((account >> SUB_BITS).to_bytes(20, "big"))
            out[account] = self._read(lambda o=owner, a=account: model.snapshot(self.cm, o, a & MASK96, head))
        return out

    def liquidation_distance(
        self, accounts: Iterable[int], bound: float = 0.5, snapshots: dict[int, tuple] | None = None
    ) -> list[Distance]:
        """What-if from the reference model: per account and underlying it touches, the
        smallest spot move (within ±``bound``) that takes ``equity − MM`` below zero, others
        fixed. One snapshot per account (``snapshots`` when given, else :meth:`snapshots`),
        then only model arithmetic: the move is bracketed on a grid of moves and refined by
        bisection to 0.1%."""
        accounts = list(accounts)
        snaps = snapshots if snapshots is not None else self.snapshots(accounts)
        names = {u: n for n, u in self.cm.manifest.underlyings.items()}
        out = []
        for account in accounts:
            state, underlyings, params, now = snaps[account]
            for u in underlyings:

                def health(move: float, u=u, state=state, underlyings=underlyings, params=params, now=now) -> int:
                    return self._model_health(state, underlyings, params, now, u, move)

                out.append(Distance(account, names.get(u, str(u)), self._first_crossing(health, bound)))
        return out

    @staticmethod
    def _model_health(state, underlyings, params, now, u: int, move: float) -> int:
        factor = Decimal(1) + Decimal(str(move))
        shocked = dict(underlyings)
        base = underlyings[u]
        # a new round: arrays are recomputed at the shocked spot, as the engine would
        shocked[u] = replace(base, spot=int(base.spot * factor), spot_round=base.spot_round + 1)
        lines = tuple(
            replace(line, price=int(line.price * factor)) if line.underlying == u else line for line in state.collateral
        )
        m = model.margin(replace(state, collateral=lines), shocked, params, now)
        return m.equity - m.maintenance

    @staticmethod
    def _first_crossing(health: Callable[[float], int], bound: float) -> Decimal | None:
        if health(0.0) < 0:
            return Decimal(0)
        best = None
        grid = [x for x in (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0) if x <= bound]
        for sign in (-1, 1):
            lo = 0.0
            for step in grid:
                x = sign * step
                if health(x) < 0:
                    hi = x
                    for _ in range(12):
                        mid = (lo + hi) / 2
                        if health(mid) < 0:
                            hi = mid
                        else:
                            lo = mid
                    if best is None or abs(hi) < abs(best):
                        best = hi
                    break
                lo = x
        return None if best is None else Decimal(str(round(best, 4)))
