"""The keeper's shared core: the deployment, the sender, the state and its journal, and the
loop that runs the tasks. Each task (``discovery``, ``screening``, ``liquidation``,
``settlement``, ``refresh``, ``prices``) is a mixin over :class:`KeeperCore`;
:class:`crossmargin.keeper.Keeper` composes them.

Robustness lives here. Every chain action goes through :meth:`KeeperCore._act`: preflighted
against the latest state by :class:`crossmargin.clients.sender.TxSender`, skipped while an
earlier one is in flight, and journaled (key, nonce, hash) before it is sent; the journal is
reconciled with the node's nonces on start-up and before each action (:meth:`KeeperCore.reconcile`,
:meth:`KeeperCore.in_flight`). A task runs under :meth:`KeeperCore._run_task`: node errors are
retried a bounded number of times and a failure is reported, never raised.
"""

from __future__ import annotations

import json
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from ape import chain
from eth_abi import decode as abi_decode
from web3.exceptions import TransactionNotFound

from crossmargin.clients.sender import Call, CallResult, TxSender, is_transient, retry, revert_reason
from crossmargin.keeper.reports import Action, TaskReport
from crossmargin.keeper.state import NOTHING_TO_DO, KeeperConfig, KeeperState, RefusedError
from crossmargin.model import margin as model
from crossmargin.model.auction import AuctionParams
from crossmargin.units import SUB_BITS

# Tasks of a full round, in order.
TASKS = ("discover", "liquidate", "settle", "refresh")


class KeeperCore:
    """The state, reads, journal and loop every keeper task shares.

    Args:
        cm: The :class:`crossmargin.clients.protocol.Protocol`.
        sender: An ape account that signs (None: dry run only).
        config: See :class:`KeeperConfig`.
        log: Where progress lines go (default: nowhere).
    """

    def __init__(
        self, cm: Any, sender: Any = None, config: KeeperConfig | None = None, log: Callable[[str], None] | None = None
    ):
        self.cm = cm
        self.sender_account = sender
        self.config = config or KeeperConfig()
        if sender is None and not self.config.dry_run:
            self.config = replace(self.config, dry_run=True)
        self.log = log or (lambda _line: None)
        self._lock = threading.RLock()
        # set by `stop` (e.g. from a SIGTERM handler): `run` ends after the current task
        self._stop = threading.Event()
        # oracle reasons the last screen valued through with the liquidation reads
        self._degraded: list[str] = []
        self.auction_params = AuctionParams.read(cm.liquidator.contract)
        self.state = self._load_state()
        self.tx = TxSender(
            account=sender,
            dry_run=self.config.dry_run,
            workers=self.config.workers,
            attempts=self.config.attempts,
            retry_delay=self.config.retry_delay,
            on_signed=self._record_planned,
            log=self.log,
        )
        self._topics = self._event_topics()
        if self.sender_account is not None and not self.config.dry_run:
            try:
                self.reconcile()
            except Exception as error:  # noqa: BLE001 - `in_flight` applies the same rule later
                if not is_transient(error):
                    raise
                self.log(f"journal not reconciled yet (node error: {error})")

    # ------------------------------------------------------------------ helpers

    @property
    def web3(self):
        return chain.provider.web3

    @property
    def bidder(self) -> int | None:
        """The bidding account id (sender, bidder subaccount)."""
        if self.sender_account is None:
            return None
        return (int(self.sender_account.address, 16) << SUB_BITS) | self.config.bidder_subaccount

    def _read(self, fn: Callable[[], Any]) -> Any:
        return retry(fn, self.config.attempts, self.config.retry_delay, self.log)

    def _eth_call(self, method: Any, *args: Any, types: str) -> Any:
        """A view through raw ``eth_call`` (thread-safe, no ape decoding): ``types`` is the
        ABI of its output, e.g. ``"(int256,uint256,uint256)[]"``."""

        def call() -> bytes:
            data = "0x" + bytes(method.encode_input(*args)).hex()
            return bytes(self.web3.eth.call({"to": method.contract.address, "data": data}))

        return abi_decode([types], self._read(call))[0]

    # batch reads: the Lens's views, 64 ids a call (per-id views when the deployment has no
    # Lens, e.g. a manifest written before it existed)

    def _instruments(self, ids: list[int]) -> list[Any]:
        """``Markets.instrument`` of each id (kind, underlying, ..., open_interest, settlement_price)."""
        if getattr(self.cm, "lens", None) is not None:
            return self._read(lambda: self.cm.lens.instruments(ids))
        return [self._read(lambda i=i: self.cm.markets.contract.instrument(i)) for i in ids]

    def _array_epochs(self, ids: list[int]) -> list[int]:
        """The epoch of each id's stored risk array (0 for none)."""
        if getattr(self.cm, "lens", None) is not None:
            return self._read(lambda: self.cm.lens.array_epochs(ids))
        return [self._read(lambda i=i: self.cm.engine.contract.risk_array(i))[0] for i in ids]

    def _holders_sizes(self, instrument: int, accounts: list[int]) -> list[int]:
        """The size of ``instrument`` each account holds."""
        if getattr(self.cm, "lens", None) is not None:
            return self._read(lambda: self.cm.lens.holders_sizes(instrument, accounts))
        clearing = self.cm.clearing.contract
        return [self._read(lambda a=a: clearing.option_size(a, instrument)) for a in accounts]

    def _underlying_states(self, ids: list[int], block_id: int) -> dict[int, model.UnderlyingState]:
        """Each underlying's model state at ``block_id`` (listing, reads, grid, epoch)."""
        if getattr(self.cm, "lens", None) is None:
            return {u: self._read(lambda u=u: model.load_underlying(self.cm, u, block_id)) for u in ids}
        rows = self._read(lambda: self.cm.lens.underlyings(ids, block_id=block_id))
        return {r.id: model.lens_underlying(r) for r in rows}

    # ------------------------------------------------------------------ state file

    def _load_state(self) -> KeeperState:
        fresh = KeeperState(chain_id=chain.chain_id, deployment=self.cm.liquidator.address)
        path = self.config.state_file
        if path is None or not Path(path).exists():
            return fresh
        try:
            state = KeeperState.from_json(json.loads(Path(path).read_text()))
        except (ValueError, KeyError) as error:
            self.log(f"state file {path} unreadable ({error}); starting afresh")
            return fresh
        if (state.chain_id, state.deployment.lower()) != (fresh.chain_id, fresh.deployment.lower()):
            self.log(f"state file {path} belongs to another deployment; starting afresh")
            return fresh
        head = chain.blocks.head.number
        if state.last_block >= 0:
            if state.last_block > head or self._block_hash(state.last_block) != state.last_block_hash:
                self.log(
                    f"block {state.last_block} of the state file is not on this chain (reset or reorg); rescanning"
                )
                state.last_block, state.last_block_hash = -1, ""
                state.auctions.clear()
        return state

    def _block_hash(self, number: int) -> str:
        return "0x" + bytes(self._read(lambda: self.web3.eth.get_block(number)["hash"])).hex()

    def save(self) -> None:
        """Writes the state file atomically (no-op without one)."""
        path = self.config.state_file
        if path is None or not self.config.persist:
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.state.to_json(), indent=1, sort_keys=True))
        os.replace(tmp, path)

    # ------------------------------------------------------------------ sent-transaction log

    def _record_planned(self, planned: list[tuple[Call, int, str]]) -> None:
        now = int(time.time())
        for call, nonce, tx_hash in planned:
            self.state.sent[call.key] = {"nonce": nonce, "status": "pending", "tx": tx_hash, "at": now}
        self.save()

    def _record_results(self, results: Iterable[CallResult]) -> None:
        for r in results:
            entry = self.state.sent.get(r.key)
            if entry is None or entry.get("status") != "pending" or entry.get("nonce") != r.nonce:
                continue
            if r.status == "sent":
                entry.update(status="done", tx=r.tx, block=r.block)
            elif r.status == "reverted":
                entry.update(status="reverted", tx=r.tx, block=r.block, reason=r.reason)
            # else (not sent, or no receipt yet): stays pending; the node's nonces decide
            # whether it is in flight (see `_resolve`)
        self._prune_sent()
        self.save()

    def _prune_sent(self, keep: int = 2_000) -> None:
        finished = [k for k, v in self.state.sent.items() if v.get("status") != "pending"]
        for k in sorted(finished, key=lambda k: self.state.sent[k].get("at", 0))[: max(0, len(finished) - keep)]:
            del self.state.sent[k]

    def _nonces(self) -> tuple[int, int]:
        """The sender's mined (``latest``) and pooled (``pending``) transaction counts."""
        address = self.sender_account.address
        mined = self._read(lambda: self.web3.eth.get_transaction_count(address, "latest"))
        pooled = self._read(lambda: self.web3.eth.get_transaction_count(address, "pending"))
        return mined, max(mined, pooled)

    def _resolve(self, key: str, mined: int, pooled: int) -> bool:
        """Settles the pending journal entry ``key`` against the node; True if it is still
        in flight. The rule (``mined``/``pooled``: the node's latest/pending nonces):

        - nonce < mined: its nonce was used. Its receipt (by the journaled hash) makes it
          ``done`` or ``reverted``; no receipt means another transaction used the nonce
          (``consumed``): in every case the chain's state decides from now on;
        - nonce >= pooled: the node never received it (the keeper died before sending, or
          the pool dropped it); it can never be mined without being sent again, so the
          entry is dropped and the work is done afresh;
        - in between: the node's pool holds that nonce. In flight if the pool's transaction
          is this one (or no hash was journaled); else consumed.
        """
        entry = self.state.sent[key]
        nonce, tx_hash = entry["nonce"], entry.get("tx")
        if nonce >= pooled:
            del self.state.sent[key]
            return False
        if nonce >= mined:
            if tx_hash is None or self._read(lambda: self._known(tx_hash)):
                return True
            entry["status"] = "consumed"
            return False
        receipt = self._read(lambda: self._receipt(tx_hash)) if tx_hash else None
        if receipt is None:
            entry["status"] = "consumed"
        else:
            status = "done" if receipt["status"] == 1 else "reverted"
            entry.update(status=status, block=receipt["blockNumber"])
        return False

    def _known(self, tx_hash: str) -> bool:
        try:
            self.web3.eth.get_transaction(tx_hash)
        except TransactionNotFound:
            return False
        return True

    def _receipt(self, tx_hash: str) -> Any:
        try:
            return self.web3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            return None

    def reconcile(self) -> dict[str, int]:
        """Resolves every pending journal entry against the node (see :meth:`_resolve`),
        as after a crash; saves and returns the counts by outcome."""
        pending = [k for k, v in self.state.sent.items() if v.get("status") == "pending"]
        if not pending or self.sender_account is None:
            return {}
        mined, pooled = self._nonces()
        counts: dict[str, int] = {}
        for k in pending:
            flying = self._resolve(k, mined, pooled)
            outcome = "in flight" if flying else self.state.sent.get(k, {}).get("status", "never sent")
            counts[outcome] = counts.get(outcome, 0) + 1
        self.log("journal reconciled: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
        self.save()
        return counts

    def in_flight(self, key: str, prefix: bool = False) -> dict[str, Any] | None:
        """A sent call with this ``key`` (or, with ``prefix``, under ``key:``) that the node
        may still mine: acting again could double-act. Resolves the other pending entries
        under the key (see :meth:`_resolve`)."""
        pending = [
            k
            for k, v in self.state.sent.items()
            if (k.startswith(key + ":") if prefix else k == key) and v.get("status") == "pending"
        ]
        if not pending or self.sender_account is None:
            return None
        mined, pooled = self._nonces()
        for k in pending:
            if self._resolve(k, mined, pooled):
                return {"key": k, **self.state.sent[k]}
        return None

    # ------------------------------------------------------------------ running

    def _run_task(self, report: TaskReport, fn: Callable[[TaskReport], None]) -> TaskReport:
        """Runs ``fn(report)`` under the lock with a bounded retry on node errors; any
        failure is recorded in the report, never raised."""
        began = time.monotonic()
        with self._lock:
            for attempt in range(1, self.config.attempts + 1):
                try:
                    fn(report)
                    break
                except RefusedError as error:
                    report.errors.append(f"refused: {error}")
                    break
                except Exception as error:  # noqa: BLE001 - a keeper task must not kill the loop
                    if is_transient(error) and attempt < self.config.attempts:
                        self.log(f"{report.task}: node error, retrying ({attempt}/{self.config.attempts}): {error}")
                        time.sleep(self.config.retry_delay * 2 ** (attempt - 1))
                        continue
                    reason = revert_reason(error)
                    if reason is not None:
                        report.errors.append(f"reverted: {reason}")
                    else:
                        what = "node error" if is_transient(error) else "error"
                        report.errors.append(f"{what}: {type(error).__name__}: {error}")
                    self.log(f"{report.task}: {report.errors[-1]}")
                    if reason is None and not is_transient(error):
                        self.log(traceback.format_exc())
                    break
        report.seconds = time.monotonic() - began
        return report

    def run_once(self, tasks: Sequence[str] = TASKS) -> list[TaskReport]:
        """Runs ``tasks`` (names: discover, liquidate, settle, refresh, prices) in order;
        a failing task is reported and the next one runs."""
        methods = {
            "discover": self.discover,
            "liquidate": self.liquidate,
            "settle": self.settle,
            "refresh": self.refresh,
            "prices": self.move_prices,
        }
        unknown = [t for t in tasks if t not in methods]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; known: {sorted(methods)}")
        reports = []
        for t in tasks:
            if self.stopping:
                break  # the tasks not run yet run in the next process's first round
            reports.append(methods[t]())
        return reports

    def stop(self) -> None:
        """Asks :meth:`run` (and :meth:`run_once`) to end after the task in progress; safe
        to call from a signal handler or another thread."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

    def run(
        self,
        tasks: Sequence[str] = TASKS,
        interval: float = 12.0,
        iterations: int | None = None,
        on_reports: Callable[[list[TaskReport]], None] | None = None,
    ) -> None:
        """Runs rounds of ``tasks`` every ``interval`` seconds (forever by default) until
        :meth:`stop`, which ends it after the task in progress (or at once between rounds)."""
        done = 0
        while (iterations is None or done < iterations) and not self.stopping:
            began = time.monotonic()
            reports = self.run_once(tasks)
            if on_reports:
                on_reports(reports)
            done += 1
            if iterations is None or done < iterations:
                self._stop.wait(max(0.0, interval - (time.monotonic() - began)))
        self.save()

    def _act(self, report: TaskReport, kind: str, calls: list[Call], targets: list[str]) -> list[CallResult]:
        """Sends ``calls`` (preflighted; skipped while an earlier one is in flight) and
        records one action per call in ``report``."""
        todo, todo_targets = [], []
        for call, target in zip(calls, targets, strict=True):
            # bids (and standing executions) are keyed per attempt: any on the same account
            # (and bidder) in flight blocks another
            if kind in ("bid", "standing"):
                flying = self.in_flight(call.key.rsplit(":", 1)[0], prefix=True)
            else:
                flying = self.in_flight(call.key)
            if flying is not None:
                report.actions.append(Action(kind, target, "skipped", f"in flight (nonce {flying['nonce']})"))
                continue
            todo.append(call)
            todo_targets.append(target)
        if not todo:
            return []
        results = self.tx.execute(todo)
        if not self.config.dry_run:
            self._record_results(results)
        for result, target in zip(results, todo_targets, strict=True):
            status: str = result.status
            if status in ("rejected", "reverted") and result.reason in NOTHING_TO_DO:
                status = "skipped"
            report.actions.append(Action(kind, target, status, result.reason or "", result.tx, result.gas_used))
            if status not in ("sent", "would-send", "skipped"):
                self.log(f"{kind} {target}: {status}: {result.reason}")
        return results

    def _parallel(self, fn: Callable[[Any], Any], items: list) -> list:
        """``[fn(x) for x in items]``, on ``workers`` threads when there is more than one item
        (``fn`` must only read: ``_eth_call`` is thread-safe)."""
        if len(items) > 1 and self.config.workers > 1:
            with ThreadPoolExecutor(max_workers=self.config.workers) as pool:
                return list(pool.map(fn, items))
        return [fn(x) for x in items]
