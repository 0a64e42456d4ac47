"""Memory checks made before a large allocation, so a model refuses at once instead of being
killed mid-run by the operating system.

``check_memory`` compares an estimate of the peak bytes a step needs with the budget: the smaller
of a documented cap (a model parameter, 16 GB by default) and the memory the machine has
available now (``MemAvailable`` in ``/proc/meminfo``, or psutil where it is installed).
"""

from __future__ import annotations

from pathlib import Path

GB = 1024**3


class MemoryBudgetError(MemoryError, ValueError):
    """A step would need more memory than its budget; raised before anything is allocated.

    A ``ValueError`` too, so the CLI reports it as one line (the configuration is what is wrong).
    """


def available_bytes() -> int | None:
    """Memory the machine can give a process now (bytes), or None when it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def budget_bytes(cap_gb: float) -> tuple[int, str]:
    """``(bytes, why)``: the smaller of ``cap_gb`` and the available memory, and which one."""
    cap = int(cap_gb * GB)
    avail = available_bytes()
    if avail is not None and avail < cap:
        return avail, f"{avail / GB:.1f} GB available on this machine"
    return cap, f"the cap of {cap_gb:g} GB"


def check_memory(what: str, need: int, cap_gb: float, instead: str) -> None:
    """Raise `MemoryBudgetError` when ``need`` bytes exceed the budget (see `budget_bytes`).

    The message names the step, the estimate, the budget and ``instead`` (what to use)."""
    budget, why = budget_bytes(cap_gb)
    if need > budget:
        raise MemoryBudgetError(f"{what} needs about {need / GB:.1f} GB, more than {why} "
                                f"({budget / GB:.1f} GB): {instead}")
