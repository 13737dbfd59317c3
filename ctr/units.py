"""Sizes as ctr prints them, in one place: Docker's decimal units for images and
transfers, the kernel's binary units for memory, and the exact short form a user
types in a flag (64m). Parsing a size from a flag is ctr.spec's (parse_memory)."""

from __future__ import annotations


def decimal_size(n: float, precision: str = ".3g") -> str:
    """Docker's sizes (`docker images`, `docker ps -s`): powers of 1000, three significant
    digits: 1980000 -> "1.98MB"; a pull's progress passes precision=".1f" (1.9MB)."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)}B" if unit == "B" else f"{value:{precision}}{unit}"
        value /= 1000
    raise AssertionError("unreachable")


def binary_size(n: float, sep: str = "") -> str:
    """Memory as the kernel counts it (stats, explain, compare): powers of 1024, one
    decimal: 4096 -> "4.0KiB" (sep=" ": "4.0 KiB"); 0 -> "0B"."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)}{sep}B" if unit == "B" else f"{value:.1f}{sep}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def flag_size(n: int) -> str:
    """67108864 -> "64m": the largest binary unit that divides exactly, as one types it to Docker."""
    for unit, size in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}b"
