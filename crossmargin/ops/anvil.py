"""Ape + anvil settings every entry point needs (imported by :mod:`crossmargin.clients.protocol`).

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
- **No states on disk.** Past the states it keeps in memory, anvil writes every older block's
  state to ``~/.foundry/anvil/tmp/anvil-state-*`` (1.1-1.6 GB for one test worker or one
  ``ape run gas``) and removes it only on a clean exit, which ape's stop is not: the
  directories piled up to 78 GB on the development machine and filled its disk. Nothing here
  reads a state that old (views run at the head or a few blocks back), so the managed anvil
  starts with ``--max-persisted-states 0``.
- **No per-transaction debug-log trace.** After every transaction ape asks the node whether
  the receiver is a contract and fetches the transaction's whole trace to print Vyper
  ``print()`` output. No contract here prints, and the trace is the slowest call ape makes
  per transaction, so that hook logs the confirmation only.
- **No source traceback for a failed call.** Ape maps every failed call or transaction to
  a Vyper source traceback, from a step trace of the whole call, before it raises: 74 s of a
  75 s test for one failed fill whose margin check runs ~10^5 steps, and most of the test
  suite's time in its revert tests. The error keeps its revert reason (from the node's
  error data, which is what ``ape.reverts`` checks); ``CROSSMARGIN_SHOW_TRACE=1`` restores
  the traceback and the printed trace.
- **No call trace printed for a failed call.** Ape prints the whole call trace of every
  call, estimate or transaction that reverts before it raises (about 120 lines for a failed
  fill). On a node provider (``ethereum:devnet:node``) that trace comes from anvil's
  ``debug_traceCall``, whose inner frames carry no input and no log data: it shows ``0x()``
  frames and a ``Failed to decode log data 'CashSettled'`` warning for every cash settlement
  the failed fill made (the vault's event is decoded with the right ABI, but the data is
  empty). The error itself keeps its revert reason (``clearing: insufficient margin``) and
  its source traceback; ``receipt.show_trace()`` still prints a trace on demand, and
  ``CROSSMARGIN_SHOW_TRACE=1`` restores ape's printing.
- **Receipts polled at 5 ms on a local node.** web3 waits 100 ms between receipt polls;
  anvil mines a margin-heavy transaction a few ms after it is sent, so most such
  transactions waited a whole 100 ms. Only a node on this machine is polled faster.
"""

from __future__ import annotations

import os
import threading
from functools import wraps

import ape_ethereum.provider as ape_provider
from ape.logging import logger
from ape_ethereum.trace import Trace
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
    command = [*command, "--max-persisted-states", "0"]
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

# set while a provider turns a node error into a ContractLogicError (see the module docstring)
_building_error = threading.local()
_show = Trace.show


@wraps(_show)
def _show_unless_building_error(self, *args, **kwargs):
    if getattr(_building_error, "active", False) and os.environ.get("CROSSMARGIN_SHOW_TRACE") != "1":
        return None
    return _show(self, *args, **kwargs)


def _without_trace_printing(method):
    @wraps(method)
    def wrapper(self, *args, **kwargs):
        traced = os.environ.get("CROSSMARGIN_SHOW_TRACE") == "1"
        if not traced:
            # no call trace and no source traceback (see the module docstring)
            kwargs.update(trace=None, source_traceback=None, set_ape_traceback=False)
        _building_error.active = True
        try:
            error = method(self, *args, **kwargs)
        finally:
            _building_error.active = False
        if not traced and hasattr(error, "_attempted_source_traceback"):
            # ape would build it from the failed transaction when the error is raised
            error._attempted_source_traceback = True
        return error

    return wrapper


Trace.show = _show_unless_building_error  # type: ignore[method-assign]
for _provider in (ape_provider.Web3Provider, FoundryProvider):
    _provider.get_virtual_machine_error = _without_trace_printing(_provider.get_virtual_machine_error)  # type: ignore[method-assign]
