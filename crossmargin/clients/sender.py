"""Pipelined transactions from one account: preflight, sign, send, then collect receipts.

A keeper that starts a hundred auctions cannot afford ape's one-transaction-at-a-time round
trip (prepare, estimate, sign, send, wait, decode: about 100 ms each on anvil). This module
keeps the parts that matter and overlaps the rest:

- **preflight**: one execution of every call against the latest state
  (``eth_createAccessList``, which reports the gas used; ``eth_estimateGas`` where a node
  lacks it), run concurrently. It is the on-chain confirmation before acting: a call that would revert is
  not sent, and its revert reason is returned (``"liquidator: already in auction"``);
- **sign** with consecutive nonces (the ape account signs, so keyfile accounts work too);
- **journal** every signed transaction (call, nonce, hash) through ``on_signed`` before any
  of them is sent, so a process killed at any point leaves a record the chain can judge;
- **send** the raw transactions in order, then **collect** the receipts concurrently.

    sender = TxSender(account)
    calls = [Call(liquidator.start, (account_id,), key=f"start:{account_id:#x}")]
    for result in sender.execute(calls):
        print(result.key, result.status, result.reason or result.tx)

``dry_run=True`` preflights and reports ``"would-send"`` without signing or sending anything.

Crash point, for tests only: with ``CROSSMARGIN_KEEPER_CRASH_AFTER=n`` in the environment
the process kills itself with SIGKILL once ``n`` transactions of a batch have reached the
node (``0``: right after journaling, before any is sent), as an operator's kill or a power
cut would (tests/test_keeper_crash.py).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import requests
from ape import chain
from ape.exceptions import ProviderError
from eth_abi import decode as abi_decode
from eth_utils import keccak
from web3.exceptions import ContractLogicError, TimeExhausted

Status = Literal["sent", "would-send", "reverted", "rejected", "error"]

# Exceptions worth retrying: the node did not answer, not "the call reverts".
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    OSError,
    requests.RequestException,
    ProviderError,
    TimeExhausted,
)
# Error(string) selector of a Solidity/Vyper revert with a reason.
ERROR_SELECTOR = bytes.fromhex("08c379a0")
# Gas limits: an estimate is padded by 30% (the state may move a little before mining), the
# gas an access-list run used by 50% (see `TxSender._gas`).
GAS_PAD_NUM, GAS_PAD_DEN = 13, 10
GAS_PAD_USED_NUM, GAS_PAD_USED_DEN = 3, 2
# Test-only crash point: SIGKILL this process after this many sends of a batch (unset: never).
CRASH_AFTER_ENV = "CROSSMARGIN_KEEPER_CRASH_AFTER"


def crash_after_from_env() -> int | None:
    """The crash point of ``CROSSMARGIN_KEEPER_CRASH_AFTER`` (None when unset or empty)."""
    raw = os.environ.get(CRASH_AFTER_ENV, "").strip()
    return int(raw) if raw else None


def is_transient(error: BaseException) -> bool:
    """True for node/transport failures (worth a retry), False for reverts and bugs."""
    if isinstance(error, ContractLogicError):
        return False
    return isinstance(error, TRANSIENT_ERRORS)


def retry(fn: Callable[[], Any], attempts: int = 3, delay: float = 0.5, log: Callable[[str], None] | None = None):
    """Calls ``fn`` up to ``attempts`` times while it raises a transient error (doubling
    ``delay`` between tries); any other error, or the last transient one, propagates."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as error:  # noqa: BLE001 - classified right below
            if not is_transient(error) or attempt == attempts:
                raise
            if log:
                log(f"transient error (attempt {attempt}/{attempts}): {error}")
            time.sleep(delay * 2 ** (attempt - 1))


def revert_reason(error: BaseException) -> str | None:
    """The revert string of a failed call or estimate (``"liquidator: no auction"``), else None."""
    data = getattr(error, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        raw = bytes.fromhex(data[2:])
        if raw[:4] == ERROR_SELECTOR:
            try:
                return abi_decode(["string"], raw[4:])[0]
            except Exception:  # noqa: BLE001 - fall back to the message
                pass
    message = getattr(error, "revert_message", None) or getattr(error, "message", None) or str(error)
    if isinstance(message, tuple):
        message = message[0]
    message = str(message)
    for prefix in ("execution reverted: ", "execution reverted"):
        if message.startswith(prefix):
            return message[len(prefix) :] or None
    if isinstance(error, ContractLogicError):
        return message
    return None


@dataclass(frozen=True)
class Call:
    """One contract call to send.

    Attributes:
        method: An ape contract method handler (``contract.start``).
        args: Its arguments.
        key: What the call does, stable across runs (``"start:0x…"``); the keeper's state
            file records sent calls under it.
        label: Human description for reports (default: the key).
    """

    method: Any
    args: tuple
    key: str
    label: str = ""

    @property
    def address(self) -> str:
        return self.method.contract.address

    def calldata(self) -> bytes:
        return bytes(self.method.encode_input(*self.args))


@dataclass
class CallResult:
    """What happened to one call.

    ``status``: ``sent`` (mined, succeeded), ``would-send`` (dry run, preflight passed),
    ``rejected`` (preflight reverted: not sent; ``reason`` says why), ``reverted`` (mined
    and reverted), ``error`` (the node failed; ``reason`` has the error).
    """

    key: str
    label: str
    status: Status
    reason: str | None = None
    tx: str | None = None
    nonce: int | None = None
    gas_used: int | None = None
    block: int | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("sent", "would-send")


@dataclass
class Preflight:
    call: Call
    gas: int | None = None
    reason: str | None = None
    error: str | None = None


@dataclass
class TxSender:
    """Sends calls from ``account`` (an ape account that can sign).

    Attributes:
        account: The signer; None only for dry runs.
        dry_run: Preflight only.
        workers: Concurrent preflight estimates.
        attempts, retry_delay: Bounded retry of transient node errors.
        receipt_timeout: Seconds to wait for each receipt.
        on_signed: Called with the signed ``[(call, nonce, tx hash)]`` before any of them
            is sent (the keeper journals them first, so a crash mid-send leaves a record
            that the node's nonces and receipts resolve, see ``Keeper.reconcile``).
        crash_after: Test-only crash point (see the module docstring); read from
            ``CROSSMARGIN_KEEPER_CRASH_AFTER`` by default.
    """

    account: Any = None
    dry_run: bool = False
    workers: int = 4
    attempts: int = 3
    retry_delay: float = 0.5
    receipt_timeout: float = 120.0
    use_access_list: bool = True
    on_signed: Callable[[list[tuple[Call, int, str]]], None] | None = None
    crash_after: int | None = field(default_factory=crash_after_from_env)
    log: Callable[[str], None] = field(default=lambda _line: None)
    # seconds spent in each step of the last `execute` (preflight, sign, send, receipts)
    timings: dict[str, float] = field(default_factory=dict)
    # the node's chain id, read at the first send
    _chain_id: int | None = field(default=None, repr=False)

    @property
    def web3(self):
        return chain.provider.web3

    @property
    def address(self) -> str | None:
        return None if self.account is None else self.account.address

    # ------------------------------------------------------------------ steps

    def preflight(self, calls: Sequence[Call]) -> list[Preflight]:
        """Runs every call once against the latest state (concurrently): its gas, or the
        reason it would revert."""
        sender = self.address or "0x0000000000000000000000000000000000000000"

        def one(call: Call) -> Preflight:
            tx = {"from": sender, "to": call.address, "data": "0x" + call.calldata().hex()}
            try:
                gas = retry(lambda: self._gas(tx), self.attempts, self.retry_delay, self.log)
                return Preflight(call, gas=gas)
            except Exception as error:  # noqa: BLE001 - reported per call
                reason = revert_reason(error)
                if reason is not None or isinstance(error, ContractLogicError):
                    return Preflight(call, reason=reason or "reverted")
                return Preflight(call, error=f"{type(error).__name__}: {error}")

        if len(calls) <= 1 or self.workers <= 1:
            return [one(c) for c in calls]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(one, calls))

    def _gas(self, tx: dict) -> int:
        """A gas limit for ``tx``, or raises ``ContractLogicError`` with the revert data.

        ``eth_createAccessList`` executes the call once and reports the gas it used;
        ``eth_estimateGas`` binary-searches the limit with a dozen executions (on anvil about
        5x slower). The used gas is padded by half (refunds are paid after execution, and
        each call frame only forwards 63/64 of what is left); nodes without the method fall
        back to estimateGas, padded by 30%.
        """
        if self.use_access_list:
            response = self.web3.provider.make_request("eth_createAccessList", [tx, "latest"])
            error = response.get("error")
            if error is None:
                return int(response["result"]["gasUsed"], 16) * GAS_PAD_USED_NUM // GAS_PAD_USED_DEN
            if error.get("code") == 3 or "revert" in str(error.get("message", "")):
                raise ContractLogicError(error.get("message", "execution reverted"), data=error.get("data"))
            self.log(f"eth_createAccessList unavailable ({error.get('message')}); estimating gas instead")
            self.use_access_list = False
        return self.web3.eth.estimate_gas(tx) * GAS_PAD_NUM // GAS_PAD_DEN

    def execute(self, calls: Iterable[Call]) -> list[CallResult]:
        """Preflights ``calls`` and sends those that pass (unless dry run), in order."""
        calls = list(calls)
        self.timings = {}
        if not calls:
            return []
        began = time.monotonic()
        checks = self.preflight(calls)
        self.timings["preflight"] = time.monotonic() - began
        results: list[CallResult | None] = [None] * len(calls)
        ready: list[tuple[int, Preflight]] = []
        for i, check in enumerate(checks):
            call = check.call
            if check.error is not None:
                results[i] = CallResult(call.key, call.label or call.key, "error", check.error)
            elif check.reason is not None:
                results[i] = CallResult(call.key, call.label or call.key, "rejected", check.reason)
            elif self.dry_run or self.account is None:
                results[i] = CallResult(call.key, call.label or call.key, "would-send")
            else:
                ready.append((i, check))
        if ready:
            for i, result in zip([i for i, _ in ready], self._send([c for _, c in ready]), strict=True):
                results[i] = result
        return [r for r in results if r is not None]

    # ------------------------------------------------------------------ internals

    def _fees(self) -> dict[str, int]:
        provider = chain.provider
        priority = retry(lambda: provider.priority_fee, self.attempts, self.retry_delay, self.log)
        base = retry(lambda: provider.base_fee, self.attempts, self.retry_delay, self.log)
        return {"max_priority_fee": priority, "max_fee": 2 * base + priority}

    def _send(self, checks: list[Preflight]) -> list[CallResult]:
        account = self.account
        web3 = self.web3
        nonce = retry(
            lambda: web3.eth.get_transaction_count(account.address, "pending"),
            self.attempts,
            self.retry_delay,
            self.log,
        )
        fees = self._fees()
        # the node's own chain id (ape's can be its network's configured one, e.g. 1337 on
        # `ethereum:local:<uri>` while the anvil behind it signs for 31337); read once
        if self._chain_id is None:
            self._chain_id = retry(lambda: web3.eth.chain_id, self.attempts, self.retry_delay, self.log)
        chain_id = self._chain_id
        ecosystem = chain.provider.network.ecosystem

        # sign every transaction first, then journal them all (one write), then send: a
        # crash anywhere leaves each sent transaction's nonce and hash on record
        began = time.monotonic()
        raws: list[bytes] = []
        for k, check in enumerate(checks):
            call = check.call
            # no `sender` field: ape would then re-derive the signer from the signature
            # when serializing (an ECDSA recovery, ~12 ms in pure Python) to check it
            txn = ecosystem.create_transaction(
                chain_id=chain_id,
                receiver=call.address,
                data=call.calldata(),
                nonce=nonce + k,
                gas_limit=check.gas,
                type=2,
                **fees,
            )
            signed = account.sign_transaction(txn)
            if signed is None:
                raise RuntimeError(f"{account} declined to sign {call.key}")
            raws.append(bytes(signed.serialize_transaction()))
        # an EIP-2718 transaction's hash is the keccak of its raw bytes (type byte included)
        hashes = ["0x" + keccak(raw).hex() for raw in raws]
        self.timings["sign"] = time.monotonic() - began
        if self.on_signed:
            self.on_signed([(check.call, nonce + k, hashes[k]) for k, check in enumerate(checks)])
        self._maybe_crash(0)

        began = time.monotonic()
        sent: dict[int, tuple[str | None, str | None]] = {}
        for k, raw in enumerate(raws):
            if any(failure for _hash, failure in sent.values()):
                # an earlier nonce did not reach the node: later ones would be stuck
                sent[k] = (None, "not sent: an earlier transaction failed to send")
                continue
            try:
                tx_hash = retry(
                    lambda raw=raw: web3.eth.send_raw_transaction(raw), self.attempts, self.retry_delay, self.log
                )
                sent[k] = ("0x" + bytes(tx_hash).hex(), None)
            except Exception as error:  # noqa: BLE001 - reported per call
                sent[k] = (None, revert_reason(error) or f"{type(error).__name__}: {error}")
                continue
            self._maybe_crash(k + 1)
        self.timings["send"] = time.monotonic() - began
        self.timings["sign+send"] = self.timings["sign"] + self.timings["send"]
        began = time.monotonic()

        def collect(k: int) -> CallResult:
            call = checks[k].call
            label = call.label or call.key
            tx_hash, failure = sent.get(k, (None, "not sent"))
            if tx_hash is None:
                return CallResult(call.key, label, "error", failure, nonce=nonce + k)
            try:
                receipt = retry(
                    lambda: web3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.receipt_timeout),
                    self.attempts,
                    self.retry_delay,
                    self.log,
                )
            except Exception as error:  # noqa: BLE001 - the transaction may still land
                return CallResult(call.key, label, "error", f"no receipt: {error}", tx_hash, nonce + k)
            status: Status = "sent" if receipt["status"] == 1 else "reverted"
            reason = None if status == "sent" else self._replay_reason(call, receipt["blockNumber"])
            return CallResult(
                call.key, label, status, reason, tx_hash, nonce + k, receipt["gasUsed"], receipt["blockNumber"]
            )

        if len(checks) > 1 and self.workers > 1:
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                results = list(pool.map(collect, range(len(checks))))
        else:
            results = [collect(k) for k in range(len(checks))]
        self.timings["receipts"] = time.monotonic() - began
        return results

    def _maybe_crash(self, sends: int) -> None:
        """The test-only crash point: SIGKILL once ``sends`` transactions reached the node."""
        if self.crash_after is not None and sends == self.crash_after:
            self.log(f"{CRASH_AFTER_ENV}={self.crash_after}: killing this process")
            os.kill(os.getpid(), signal.SIGKILL)

    def _replay_reason(self, call: Call, block: int) -> str:
        """Why a mined call reverted: replays it on the state before its block."""
        try:
            self.web3.eth.call(
                {"from": self.address, "to": call.address, "data": "0x" + call.calldata().hex()}, block - 1
            )
        except Exception as error:  # noqa: BLE001 - the reason is what we want
            return revert_reason(error) or str(error)
        return "reverted"
