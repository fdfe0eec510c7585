"""Ape + anvil settings every entry point needs (imported by :mod:`crossmargin.protocol`).

Ape builds the source traceback of a failed transaction from an anvil step trace with
memory. The margin engine keeps tens of KB of memory over ~10^5 steps, and such a trace
exhausted anvil (it crashed, taking the node down mid-run); the traceback needs no memory,
so ask for none.
"""

from ape_foundry.trace import AnvilTransactionTrace

_trace_field = AnvilTransactionTrace.model_fields["debug_trace_transaction_parameters"]
_trace_field.default = {"stepsTracing": True, "enableMemory": False}
AnvilTransactionTrace.model_rebuild(force=True)
