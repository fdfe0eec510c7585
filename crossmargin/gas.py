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
