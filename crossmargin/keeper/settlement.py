"""Settlement: expired options and dated futures of every known holder, with the round
hint of the first oracle round at or after expiry (:meth:`Settlement.round_hint`)."""

from __future__ import annotations

from ape import chain
from web3.exceptions import ContractLogicError

from crossmargin.clients.sender import Call
from crossmargin.keeper.core import KeeperCore
from crossmargin.keeper.reports import Action, SettlementReport
from crossmargin.keeper.state import FUTURE, SettlementBlocked, describe_account
from crossmargin.model import margin as model

# Chainlink round ids: phase (16 bits) << 64 | round of the phase's aggregator.
PHASE_SHIFT = 64
PHASE_MASK = 2**PHASE_SHIFT - 1

# What a keeper reads of a Chainlink aggregator (roundId, answer, startedAt, updatedAt, answeredInRound).
_ROUND = [
    {"name": n, "type": t}
    for n, t in (("r", "uint80"), ("a", "int256"), ("s", "uint256"), ("u", "uint256"), ("q", "uint80"))
]
AGGREGATOR_ABI = [
    {"name": "latestRoundData", "type": "function", "stateMutability": "view", "inputs": [], "outputs": _ROUND},
    {
        "name": "getRoundData",
        "type": "function",
        "stateMutability": "view",
        "inputs": [{"name": "round_id", "type": "uint80"}],
        "outputs": _ROUND,
    },
]


class Settlement(KeeperCore):
    """:meth:`settle` and the round hint it needs."""

    def settle(self) -> SettlementReport:
        """Settles the expired options and futures of every known holder."""
        return self._run_task(SettlementReport("settle"), self._settle)

    def _settle(self, report: SettlementReport) -> None:
        clearing = self.cm.clearing.contract
        now = self._read(lambda: chain.pending_timestamp)
        calls, targets = [], []
        expired = [
            i
            for i, listing in sorted(self.state.options.items())
            if listing.expiry <= now and self.state.holders.get(i)
        ]
        # one batch read for the stored prices, one per 64 candidate holders for the sizes
        prices = {i: row.settlement_price for i, row in zip(expired, self._instruments(expired), strict=True)}
        for instrument in expired:
            listing, holders = self.state.options[instrument], self.state.holders[instrument]
            report.expired += 1
            candidates = sorted(holders)
            if listing.kind == FUTURE:
                # futures sit in the positions' words (no per-id view): one read per holder
                sizes = [self._size(a, instrument, listing.kind) for a in candidates]
            else:
                sizes = self._holders_sizes(instrument, candidates)
            held = [a for a, size in zip(candidates, sizes, strict=True) if size != 0]
            for a in set(holders) - set(held):
                holders.discard(a)  # settled, or moved away
            if not held:
                continue
            hint = 0  # once the price is stored, any hint will do
            if prices[instrument] == 0:
                try:
                    hint = self.round_hint(listing.underlying, listing.expiry)
                except SettlementBlocked as blocked:
                    report.actions.append(Action("settle", f"instrument {instrument}", "rejected", str(blocked)))
                    continue
                if hint is None:
                    report.waiting.append(instrument)
                    report.actions.append(
                        Action(
                            "settle", f"instrument {instrument}", "skipped", "no oracle round at or after expiry yet"
                        )
                    )
                    continue
            for a in held:
                calls.append(Call(clearing.settle, (a, instrument, hint), f"settle:{a:#x}:{instrument}"))
                targets.append(f"{describe_account(a)} instrument {instrument}")
        for result in self._act(report, "settle", calls, targets):
            if result.status == "sent" or result.reason == "clearing: no position":
                _, account, instrument = result.key.split(":")
                self.state.holders.get(int(instrument), set()).discard(int(account, 16))
        self.save()

    def _size(self, account: int, instrument: int, kind: int) -> int:
        """The account's size (WAD units) of an option or a future, 0 if none."""
        clearing = self.cm.clearing.contract
        if kind != FUTURE:
            return self._read(lambda: clearing.option_size(account, instrument))
        lines = self._read(lambda: clearing.positions(account)).futures
        return next((f.size for f in map(model.future_line, lines) if f.instrument == instrument), 0)

    def round_hint(self, underlying: int, expiry: int) -> int | None:
        """The round hint that settles ``expiry`` on ``underlying``'s spot feed (the
        router's rules, ``OracleRouter.settlement_price``), or None if there is none yet.

        The settlement round is the first of the feed's history at or after ``expiry``
        (each Chainlink phase's rounds before the next phase's first round). The hint is
        that round; or, when it opens a phase, the round before it in the history (the
        previous phase's last); or 0 when the feed has had no round since the expiry for
        the router's ``fallback_delay`` (it then settles at its last round before). Each
        phase is searched by bisection, newest first.

        Raises:
            SettlementBlocked: The settlement round opens the feed's first phase (or one
                after a phase with no round): nothing before it can be named.
        """
        spot_key = self._read(lambda: self.cm.engine.contract.spot_key(underlying))
        address = self._read(lambda: self.cm.oracle.contract.feeds(spot_key)).aggregator
        feed = self.web3.eth.contract(address=address, abi=AGGREGATOR_ABI)
        latest, _answer, _started, latest_at, _ = self._read(lambda: feed.functions.latestRoundData().call())
        if latest_at < expiry:
            delay = self._read(lambda: self.cm.oracle.contract.fallback_delay())
            now = self._read(lambda: chain.pending_timestamp)
            return 0 if now >= expiry + delay else None

        def updated_at(round_id: int) -> int | None:
            try:
                at = self._read(lambda r=round_id: feed.functions.getRoundData(r).call())[3]
            except ContractLogicError:  # the aggregator reverts: no such round
                return None
            return at or None

        phase, last = latest >> PHASE_SHIFT, latest & PHASE_MASK
        next_at = None  # updatedAt of the first round of the phase after `phase`
        while True:
            base = phase << PHASE_SHIFT
            # first round of the phase at or after expiry (`last + 1` if none); rounds at
            # or after the next phase's first are not in the history: as if after expiry
            lo, hi = 1, last + 1
            while lo < hi:
                mid = (lo + hi) // 2
                at = updated_at(base | mid)
                if at is not None and (at >= expiry or (next_at is not None and at >= next_at)):
                    hi = mid
                else:
                    lo = mid + 1
            first = lo
            if first <= last:
                at = updated_at(base | first)
                if next_at is None or at < next_at:
                    if first > 1:
                        return base | first
                    # it opens the phase: the hint is the previous phase's last round
                    if phase == 0:
                        raise SettlementBlocked(f"the first round after expiry ({base | first:#x}) opens the feed")
                    next_at, phase = at, phase - 1
                    last = self._phase_last(updated_at, phase)
                    if last == 0:
                        raise SettlementBlocked(f"phase {phase} before round {base | first:#x} has no round")
                    continue
            # no round of the history in this phase at or after expiry: the next phase's
            # first round settles, and the hint is this phase's round before it
            if first == 1:
                raise SettlementBlocked(f"phase {phase} has no round before expiry")
            return base | (first - 1)

    @staticmethod
    def _phase_last(updated_at, phase: int) -> int:
        """The last round of a Chainlink phase (0 if it has none), by doubling then bisection."""
        base = phase << PHASE_SHIFT
        if updated_at(base | 1) is None:
            return 0
        lo, step = 1, 1
        while updated_at(base | (lo + step)) is not None:
            lo, step = lo + step, step * 2
        hi = lo + step  # lo exists, hi does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if updated_at(base | mid) is None:
                hi = mid
            else:
                lo = mid
        return lo
