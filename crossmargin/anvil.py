"""Ape + anvil settings every entry point needs (imported by :mod:`crossmargin.protocol`).

Pinned to eth-ape 0.8.51, ape-foundry 0.8.12 and web3 7 (``requirements.txt``); each patch
below changes a default those versions hard-code and offer no setting for.

- **Traces without memory.** Ape builds the source traceback of a failed transaction from
  an anvil step trace with memory. The margin engine keeps tens of KB of memory over ~10^5
  steps, and such a trace exhausted anvil (it crashed, taking the node down mid-run); the
  traceback needs no memory, so ask for none.
- **No step recording.** ape-foundry starts anvil with ``--steps-tracing``, which makes
  anvil keep every opcode step of every transaction for as long as it runs: ``ape run gas``
  grew its anvil past 21 GB and a long stateful run past 8 GB. Nothing here needs geth-style
  step traces of mined transactions (gas figures come from receipts; revert reasons from the
  node's error; call traces are kept without it), so the managed anvil starts without the
  flag. ``CROSSMARGIN_ANVIL_STEPS=1`` puts it back (for ``receipt.show_trace()`` sessions).
- **No per-transaction debug-log trace.** After every transaction ape asks the node whether
  the receiver is a contract and fetches the transaction's whole trace to print Vyper
  ``print()`` output. No contract here prints, and the trace is the slowest call ape makes
  per transaction, so that hook logs the confirmation only.
- **Receipts polled at 5 ms on a local node.** web3 waits 100 ms between receipt polls;
  anvil mines a margin-heavy transaction a few ms after it is sent, so most such
  transactions waited a whole 100 ms. Only a node on this machine is polled faster.
"""

from __future__ import annotations

import os
from functools import wraps

import ape_ethereum.provider as ape_provider
from ape.logging import logger
from ape_foundry.provider import FoundryProvider
from ape_foundry.trace import AnvilTransactionTrace
from web3.eth import Eth

_trace_field = AnvilTransactionTrace.model_fields["debug_trace_transaction_parameters"]
_trace_field.default = {"stepsTracing": True, "enableMemory": False}
AnvilTransactionTrace.model_rebuild(force=True)

LOCAL_POLL_SECONDS = 0.005
_LOCAL_HOSTS = ("://127.0.0.1", "://localhost")

_build_command = FoundryProvider.build_command


@wraps(_build_command)
def _build_command_without_steps(self) -> list[str]:
    command = _build_command(self)
    if os.environ.get("CROSSMARGIN_ANVIL_STEPS") == "1":
        return command
    return [arg for arg in command if arg != "--steps-tracing"]


FoundryProvider.build_command = _build_command_without_steps  # type: ignore[method-assign]


def _post_send_transaction(tx, receipt) -> None:
    logger.info(f"Confirmed {receipt.txn_hash} (total fees paid = {receipt.total_fees_paid})")


ape_provider._post_send_transaction = _post_send_transaction

_wait_for_receipt = Eth.wait_for_transaction_receipt


@wraps(_wait_for_receipt)
def _wait_for_receipt_fast_locally(self, transaction_hash, timeout: float = 120, poll_latency: float = 0.1):
    uri = str(getattr(self.w3.provider, "endpoint_uri", "") or "")
    if any(host in uri for host in _LOCAL_HOSTS):
        poll_latency = min(poll_latency, LOCAL_POLL_SECONDS)
    return _wait_for_receipt(self, transaction_hash, timeout, poll_latency)


Eth.wait_for_transaction_receipt = _wait_for_receipt_fast_locally  # type: ignore[method-assign]
