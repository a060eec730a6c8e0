"""What a test can see of processes through /proc: alive, children, command lines, who maps a file."""

from __future__ import annotations

from pathlib import Path


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting to be reaped does not count)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def weight_holders(weights: Path) -> set[int]:
    """Processes that map the model's weights file into memory."""
    holders = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(weights) in (proc / "maps").read_text():
                    holders.add(int(proc.name))
            except OSError:
                continue
    return holders


def children(pid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(proc.name))
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
