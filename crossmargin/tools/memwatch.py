"""Peak resident memory of the anvil nodes a command starts.

    python -m crossmargin.tools.memwatch [--interval 0.5] -- make test

Runs the command, samples the resident set size of every ``anvil`` process under it
(ape starts one per test session, per xdist worker, per ``ape run``) and prints the peak of
each and the peak of their sum; exits with the command's exit code. The README's memory
table is measured with it.
"""

from __future__ import annotations

import subprocess
import sys
import time

import click
import psutil
from rich.console import Console
from rich.table import Table

MIB = 1024 * 1024


def _anvils(root: psutil.Process) -> list[psutil.Process]:
    try:
        children = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in children if _name(p).startswith("anvil")]


def _name(process: psutil.Process) -> str:
    try:
        return process.name()
    except psutil.Error:
        return ""


def watch(command: list[str], interval: float) -> tuple[int, dict[int, int], int, float]:
    """Runs ``command``; returns (exit code, {anvil pid: peak RSS bytes}, peak total, seconds)."""
    start = time.monotonic()
    child = subprocess.Popen(command)
    root = psutil.Process(child.pid)
    peaks: dict[int, int] = {}
    peak_total = 0
    while child.poll() is None:
        total = 0
        for anvil in _anvils(root):
            try:
                rss = anvil.memory_info().rss
            except psutil.Error:
                continue
            peaks[anvil.pid] = max(peaks.get(anvil.pid, 0), rss)
            total += rss
        peak_total = max(peak_total, total)
        time.sleep(interval)
    return child.returncode, peaks, peak_total, time.monotonic() - start


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--interval", default=0.5, show_default=True, help="Seconds between samples.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def main(interval: float, command: tuple[str, ...]) -> None:
    code, peaks, peak_total, seconds = watch(list(command), interval)
    table = Table(title=f"anvil resident memory: {' '.join(command)}")
    table.add_column("anvil pid", justify="right")
    table.add_column("peak RSS (MiB)", justify="right")
    for pid, rss in sorted(peaks.items()):
        table.add_row(str(pid), f"{rss / MIB:,.0f}")
    table.add_row("all at once", f"{peak_total / MIB:,.0f}", style="bold")
    console = Console(stderr=True)
    console.print(table)
    console.print(f"exit {code} after {seconds / 60:.1f} min")
    sys.exit(code)


if __name__ == "__main__":
    main()
