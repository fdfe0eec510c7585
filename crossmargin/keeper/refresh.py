"""Refresh: stores the risk arrays of listed, held options whose stored epoch is stale,
in batches sorted so that the engine prices each at the least gas."""

from __future__ import annotations

from ape import chain

from crossmargin.clients.sender import Call
from crossmargin.keeper.core import KeeperCore
from crossmargin.keeper.reports import RefreshReport
from crossmargin.keeper.state import FUTURE
from crossmargin.model import margin as model


class Refresh(KeeperCore):
    """:meth:`refresh` and the epochs it checks against."""

    def refresh(self) -> RefreshReport:
        """Stores the current-epoch risk arrays of listed, unexpired, held options whose
        stored array is stale, ``refresh_batch`` instruments a transaction, sorted so that
        the engine prices each batch at the least gas (see :meth:`_refresh_order`)."""
        return self._run_task(RefreshReport("refresh"), self._refresh)

    def current_epochs(self) -> dict[int, int]:
        """Per underlying with listed options, the epoch a check would use now (the
        model's ``context`` over the stored record, the oracle rounds and the age rule)."""
        head = chain.blocks.head.number
        now = self._read(lambda: chain.pending_timestamp)
        engine = self.cm.engine.contract
        params = model.EngineParams(
            im_factor=engine.im_factor(), max_array_age=engine.max_array_age(), rate=engine.rate()
        )
        states = self._underlying_states(sorted({o.underlying for o in self.state.options.values()}), head)
        return {u: model.context(state, params, now).epoch & model.LANE_MASK for u, state in states.items()}

    def _refresh_order(self, instrument: int) -> tuple[int, int, int, int, int]:
        """Sort key of ``engine.refresh`` batches: by underlying (one risk-model call each),
        expiry (shared discounting and vol terms), strike (shared ``ln`` and normal CDFs),
        with a strike's call and put adjacent (the put reuses the call's legs)."""
        o = self.state.options[instrument]
        return (o.underlying, o.expiry, o.strike, o.kind, instrument)

    def _refresh(self, report: RefreshReport) -> None:
        engine = self.cm.engine.contract
        now = self._read(lambda: chain.pending_timestamp)
        # futures have no risk arrays
        live = [i for i, o in sorted(self.state.options.items()) if o.expiry > now and o.kind != FUTURE]
        if not live:
            return
        epochs = self.current_epochs()
        held = [i for i, row in zip(live, self._instruments(live), strict=True) if row.open_interest > 0]
        report.checked = len(held)
        stale = [
            i
            for i, epoch in zip(held, self._array_epochs(held), strict=True)
            if epoch != epochs[self.state.options[i].underlying]
        ]
        report.stale = sorted(stale, key=self._refresh_order)
        size = max(1, min(self.config.refresh_batch, 64))
        chunks = [report.stale[i : i + size] for i in range(0, len(report.stale), size)]
        tag = "/".join(f"{u}@{e}" for u, e in sorted(epochs.items()))
        calls = [Call(engine.refresh, (chunk,), f"refresh:{','.join(map(str, chunk))}:{tag}") for chunk in chunks]
        self._act(report, "refresh", calls, [f"instruments {', '.join(map(str, c))}" for c in chunks])
        if report.stale and not self.config.dry_run:
            epochs = self.current_epochs()
            report.stored = sum(
                1
                for i, epoch in zip(report.stale, self._array_epochs(report.stale), strict=True)
                if epoch == epochs[self.state.options[i].underlying]
            )
