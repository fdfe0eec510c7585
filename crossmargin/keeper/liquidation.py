"""Liquidation: the sweep that starts every due auction, marks insolvent ones, terminates
those back above the buffer, executes the standing bids due (:mod:`crossmargin.keeper.standing`)
and bids when the quoted discount beats the threshold; and the live auctions as ``status`` shows them."""

from __future__ import annotations

import time
from decimal import Decimal

from ape import chain

from crossmargin.clients.sender import Call
from crossmargin.keeper.reports import Action, AuctionStatus, LiquidationReport
from crossmargin.keeper.screening import Screening
from crossmargin.keeper.standing import execute_standing
from crossmargin.keeper.state import describe_account
from crossmargin.units import WAD, from_wad


class Liquidation(Screening):
    """:meth:`liquidate` and :meth:`auction_statuses`."""

    def liquidate(self) -> LiquidationReport:
        """Screens every known account, then: starts every due auction not running,
        marks insolvent auctions, terminates auctions back above the buffer, executes the
        standing bids due (``crossmargin.keeper.standing``), and bids on live auctions whose quoted
        discount beats the threshold."""
        return self._run_task(LiquidationReport("liquidate"), self._liquidate)

    def _liquidate(self, report: LiquidationReport) -> None:
        began = time.monotonic()
        self._degraded = []
        healths = self.screen()
        report.degraded = ", ".join(self._degraded) or None
        report.timings["screen"] = time.monotonic() - began
        report.screened = len(healths)
        by_id = {h.account: h for h in healths}
        due = sorted((h for h in healths if h.liquidatable), key=lambda h: h.ratio)
        report.due = [h.account for h in due]
        report.nearest = sorted(healths, key=lambda h: h.ratio)[: self.config.nearest]

        # auctions the events know of, confirmed on chain (one read each)
        live: dict[int, tuple[str, int, int]] = {}
        for account in sorted(self.state.auctions):
            keeper, started_at, insolvent_at = self._read(lambda a=account: self.cm.liquidator.contract.auction(a))
            if started_at:
                live[account] = (keeper, started_at, insolvent_at)
            else:
                self.state.auctions.discard(account)
        report.auctions = len(live)

        to_start = [h.account for h in due if h.account not in live]
        if to_start:
            liquidator = self.cm.liquidator.contract
            # each with its scenario hint: the start then proves the shortfall at the worst
            # scenarios alone, the cheaper check (`Liquidator.start`)
            began = time.monotonic()
            hints = self._parallel(self._hint, to_start)
            calls = [Call(liquidator.start, (a, h), f"start:{a:#x}") for a, h in zip(to_start, hints, strict=True)]
            report.timings["start hints"] = time.monotonic() - began
            began = time.monotonic()
            for result in self._act(report, "start", calls, [describe_account(a) for a in to_start]):
                if result.status == "sent" or result.reason == "liquidator: already in auction":
                    self.state.auctions.add(int(result.key.split(":")[1], 16))
            report.timings["start"] = time.monotonic() - began
            report.timings.update({f"start {k}": v for k, v in self.tx.timings.items()})

        missing = [a for a in live if a not in by_id]
        for h in self.screen(missing) if missing else []:
            by_id[h.account] = h
        buffer = self.auction_params.buffer
        marks, terminations, biddable = [], [], []
        for account, (_keeper, _started, insolvent_at) in live.items():
            h = by_id.get(account)
            if h is None:
                continue
            if h.equity <= 0 and insolvent_at == 0:
                marks.append(account)
            elif h.equity >= -(-h.maintenance * buffer // WAD):
                terminations.append(account)
            else:
                biddable.append(account)
        liquidator = self.cm.liquidator.contract
        if marks:
            calls = [Call(liquidator.mark_insolvent, (a,), f"mark_insolvent:{a:#x}") for a in marks]
            self._act(report, "mark_insolvent", calls, [describe_account(a) for a in marks])
        if terminations:
            calls = [Call(liquidator.terminate, (a,), f"terminate:{a:#x}") for a in terminations]
            for result in self._act(report, "terminate", calls, [describe_account(a) for a in terminations]):
                if result.status == "sent":
                    self.state.auctions.discard(int(result.key.split(":")[1], 16))
        # standing bids first: they were there before the keeper's own
        running = {a: v for a, v in live.items() if a not in terminations and a in by_id}
        if running and self.state.standing:
            execute_standing(self, report, running, {a: by_id[a].equity for a in running})
        if self.config.bid_threshold is not None and biddable:
            for account in sorted(biddable, key=lambda a: by_id[a].ratio):
                self._bid(report, account)
        self.save()

    def _bid(self, report: LiquidationReport, account: int) -> None:
        """One bid on ``account`` if the discount beats the threshold and the bidder can
        afford it; price limit = the quote, so the contract's slippage guard protects it."""
        target = describe_account(account)
        bidder = self.bidder
        if bidder is None and not self.config.dry_run:
            return
        if bidder == account:
            report.actions.append(Action("bid", target, "skipped", "the bidder is the liquidated account"))
            return
        liquidator = self.cm.liquidator.contract
        engine = self.cm.engine.contract
        wanted = int(self.config.max_bid_fraction * WAD)
        full_f, full_price = self._read(lambda: liquidator.quote(account, wanted))
        m = self._read(lambda: engine.margin(account))
        # affordability: the bidder pays the price and carries the slice's initial margin
        if bidder is not None:
            b = self._read(lambda: engine.margin(bidder))
            room = b.equity - b.initial
            per_unit = (full_price + m.initial * full_f // WAD - m.equity * full_f // WAD) * WAD // max(full_f, 1)
            if per_unit > 0:
                affordable = room * WAD // per_unit * 9 // 10 if room > 0 else 0
                if affordable < full_f:
                    if affordable < WAD // 1000:
                        report.actions.append(Action("bid", target, "skipped", "bidder cannot afford a bid"))
                        return
                    wanted = affordable
        fraction, price = (
            self._read(lambda: liquidator.quote(account, wanted)) if wanted != full_f else (full_f, full_price)
        )
        bought = fraction * m.equity // WAD
        gain = bought - price
        threshold = int(self.config.bid_threshold * WAD)
        if gain <= 0 or gain * WAD < threshold * abs(bought):
            pct = Decimal(gain * 100) / Decimal(abs(bought)) if bought else Decimal(0)
            report.actions.append(Action("bid", target, "skipped", f"discount {pct:.2f}% below threshold"))
            return
        call = Call(
            liquidator.bid,
            (account, fraction, price, self.config.bidder_subaccount),
            f"bid:{account:#x}:{int(time.time() * 1000)}",
            f"bid {from_wad(fraction):.4f} of {target} at {from_wad(price):.2f}",
        )
        self._act(report, "bid", [call], [target])

    def auction_statuses(self) -> list[AuctionStatus]:
        """Every live auction the keeper knows of, with its current quote."""
        liquidator, engine = self.cm.liquidator.contract, self.cm.engine.contract
        now = chain.blocks.head.timestamp
        ramp_time = self.auction_params.insolvent_ramp
        out = []
        for account in sorted(self.state.auctions):
            keeper, started_at, insolvent_at = self._read(lambda a=account: liquidator.auction(a))
            if not started_at:
                continue
            m = self._read(lambda a=account: engine.margin(a))
            fraction, price = self._read(lambda a=account: liquidator.quote(a, WAD))
            elapsed = now - started_at
            ramp = None
            if m.equity <= 0:
                ramp = Decimal(min(now - insolvent_at, ramp_time) if insolvent_at else 0) / Decimal(ramp_time)
            out.append(
                AuctionStatus(
                    account=account,
                    keeper=keeper,
                    started_at=started_at,
                    insolvent_at=insolvent_at,
                    elapsed=elapsed,
                    multiplier=from_wad(self._read(lambda e=elapsed: liquidator.multiplier(e))),
                    ramp=ramp,
                    equity=from_wad(m.equity),
                    maintenance=from_wad(m.maintenance),
                    fraction=from_wad(fraction),
                    price=from_wad(price),
                )
            )
        return out
