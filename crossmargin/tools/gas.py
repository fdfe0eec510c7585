"""Gas and code-size measurement helpers (used by ``ape run gas``)."""

from __future__ import annotations

from dataclasses import dataclass

from ape import project

EIP170_LIMIT = 24_576  # bytes of runtime code
TX_BASE = 21_000


def calldata_gas(data: bytes) -> int:
    """Intrinsic calldata cost: 4 gas per zero byte, 16 per non-zero byte."""
    return sum(4 if b == 0 else 16 for b in data)


@dataclass(frozen=True)
class GasRow:
    action: str
    total: int  # receipt gasUsed: what the sender pays for
    execution: int  # total less the 21,000 base and calldata (anvil's --gas-report basis)
    note: str = ""


def measure(action: str, receipt, note: str = "") -> GasRow:
    data = bytes(receipt.transaction.data)
    return GasRow(action, receipt.gas_used, receipt.gas_used - TX_BASE - calldata_gas(data), note)


def code_sizes(names: tuple[str, ...]) -> list[tuple[str, int]]:
    sizes = []
    for name in names:
        runtime = getattr(project, name).contract_type.runtime_bytecode.bytecode
        sizes.append((name, len(bytes.fromhex(runtime.removeprefix("0x")))))
    return sizes


COLD_SLOAD = 2_100  # EIP-2929 cold storage read


def storage_slots(sender, contract_method, *args) -> int:
    """Storage slots a call would touch (``eth_createAccessList`` before sending it). Every
    one is read cold at least once in a fresh transaction, so ``COLD_SLOAD`` times this is a
    floor under the transaction's gas."""
    from ape import chain

    tx = {
        "from": str(sender),
        "to": contract_method.contract.address,
        "data": contract_method.encode_input(*args).hex(),
    }
    if not tx["data"].startswith("0x"):
        tx["data"] = "0x" + tx["data"]
    result = chain.provider.make_request("eth_createAccessList", [tx, "latest"])
    return sum(len(entry["storageKeys"]) for entry in result["accessList"])


def measure_call(action: str, sender, contract_method, *args, note: str = "") -> GasRow:
    """Sends ``contract_method(*args)`` and measures it, with the cold-read floor in ``note``."""
    slots = storage_slots(sender, contract_method, *args)
    receipt = contract_method(*args, sender=sender)
    row = measure(action, receipt, note)
    floor = f"{slots} slots, floor {slots * COLD_SLOAD:,}"
    return GasRow(row.action, row.total, row.execution, f"{floor}; {note}" if note else floor)
