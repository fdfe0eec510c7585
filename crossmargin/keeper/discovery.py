"""Discovery: what the keeper knows of the deployment, read incrementally from events.

Accounts from the vault's ``Deposit``/``Move`` and the clearinghouse's ``Traded`` events
(maker and taker), auctions and standing bidders from the liquidator's, listed options and
futures (the markets contract's ``InstrumentListed``) and who may hold them, from the last
processed block to the head, ``log_chunk`` blocks a request."""

from __future__ import annotations

from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak

from crossmargin.keeper.core import KeeperCore
from crossmargin.keeper.reports import DiscoveryReport
from crossmargin.keeper.state import CALL, FUTURE, PUT, Listing
from crossmargin.units import SUB_BITS


def _topic_id(topic: bytes) -> int:
    return int.from_bytes(bytes(topic), "big")


def _event_topic(event_abi: Any) -> str:
    return "0x" + keccak(text=event_abi.selector).hex()


class Discovery(KeeperCore):
    """:meth:`discover`: new events into the keeper's state."""

    def _event_topics(self) -> dict[str, str]:
        vault, clearing, liquidator = self.cm.vault.contract, self.cm.clearing.contract, self.cm.liquidator.contract
        events = {
            "Deposit": vault.Deposit,
            "Move": vault.Move,
            "Traded": clearing.Traded,
            "InstrumentListed": self.cm.markets.contract.InstrumentListed,
            "PositionsTransferred": clearing.PositionsTransferred,
            "OptionSettled": clearing.OptionSettled,
            "FutureSettled": clearing.FutureSettled,
            "AuctionStarted": liquidator.AuctionStarted,
            "AuctionEnded": liquidator.AuctionEnded,
            "StandingBidSet": liquidator.StandingBidSet,
            "StandingBidCancelled": liquidator.StandingBidCancelled,
        }
        return {_event_topic(e.abi): name for name, e in events.items()}

    def discover(self, to_block: int | None = None) -> DiscoveryReport:
        """Reads new events up to ``to_block`` (default: the head) into the state."""
        report = DiscoveryReport("discover")
        return self._run_task(report, lambda r: self._discover(r, to_block))

    def _discover(self, report: DiscoveryReport, to_block: int | None) -> None:
        state = self.state
        head = self._read(lambda: self.web3.eth.block_number) if to_block is None else to_block
        start = max(state.last_block + 1, self.config.start_block)
        report.from_block, report.to_block = start, head
        before = set(state.accounts)
        addresses = [
            self.cm.vault.address,
            self.cm.clearing.address,
            self.cm.markets.address,
            self.cm.liquidator.address,
        ]
        topics = [list(self._topics)]
        lo = start
        while lo <= head:
            hi = min(head, lo + self.config.log_chunk - 1)
            logs = self._read(
                lambda lo=lo, hi=hi: self.web3.eth.get_logs(
                    {"fromBlock": lo, "toBlock": hi, "address": addresses, "topics": topics}
                )
            )
            for entry in logs:
                self._apply_log(entry)
            # advance the cursor chunk by chunk, so an error resumes where it stopped
            state.last_block = hi
            state.last_block_hash = self._block_hash(hi)
            lo = hi + 1
        report.new_accounts = sorted(state.accounts - before)
        report.known = len(state.accounts)
        self.save()

    def _apply_log(self, entry: Any) -> None:
        state = self.state
        topics = entry["topics"]
        name = self._topics.get("0x" + bytes(topics[0]).hex())
        data = bytes(entry["data"])
        if name == "Deposit":
            owner, sub = _topic_id(topics[1]), _topic_id(topics[2])
            state.accounts.add(owner << SUB_BITS | sub)
        elif name == "Move":
            owner = _topic_id(topics[1])
            _from, to_sub, _amount = abi_decode(["uint96", "uint96", "uint256"], data)
            state.accounts.add(owner << SUB_BITS | to_sub)
        elif name == "Traded":
            maker, taker, instrument = (_topic_id(t) for t in topics[1:4])
            state.accounts.update((maker, taker))
            if instrument in state.options:
                state.holders.setdefault(instrument, set()).update((maker, taker))
        elif name == "InstrumentListed":
            instrument, underlying = _topic_id(topics[1]), _topic_id(topics[2])
            kind, strike, expiry, _cap = abi_decode(["uint256"] * 4, data)
            if kind in (CALL, PUT, FUTURE):
                state.options[instrument] = Listing(underlying, kind, strike, expiry)
        elif name == "PositionsTransferred":
            source, target = _topic_id(topics[1]), _topic_id(topics[2])
            state.accounts.add(target)
            for holders in state.holders.values():
                if source in holders:
                    holders.add(target)
        elif name in ("OptionSettled", "FutureSettled"):
            account, instrument = _topic_id(topics[1]), _topic_id(topics[2])
            state.holders.get(instrument, set()).discard(account)
        elif name == "AuctionStarted":
            state.auctions.add(_topic_id(topics[1]))
        elif name == "AuctionEnded":
            state.auctions.discard(_topic_id(topics[1]))
        elif name == "StandingBidSet":
            state.standing.add(_topic_id(topics[1]))
        elif name == "StandingBidCancelled":
            state.standing.discard(_topic_id(topics[1]))
