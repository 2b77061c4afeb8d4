"""Seed lists as written on the command line: ``0-4``, ``0,2,5``, ``1,3-5``."""
from __future__ import annotations


class SeedError(ValueError):
    """A seed list that cannot be read; the message shows what would be right."""


def parse_seeds(text: str) -> list[int]:
    """The seeds named by ``text``, in the order given, without repeats.

    ``"0-4"`` is 0, 1, 2, 3, 4 (both ends included); ``"0,2,5"`` is those
    three; the forms combine: ``"1,3-5"`` is 1, 3, 4, 5.
    """
    seeds: list[int] = []
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts):
        raise SeedError(f"--seeds {text!r}: no seeds; write e.g. 0-4 or 0,2,5")
    for part in parts:
        lo_hi = part.split("-", 1) if "-" in part[1:] else [part, part]
        try:
            lo, hi = int(lo_hi[0]), int(lo_hi[1])
        except ValueError:
            raise SeedError(f"--seeds {text!r}: {part!r} is not a seed or a range of seeds; "
                            "write e.g. 0-4 or 0,2,5") from None
        if min(lo, hi) < 0:
            raise SeedError(f"--seeds {text!r}: seeds must be >= 0, got {part!r}")
        if hi < lo:
            raise SeedError(f"--seeds {text!r}: the range {part!r} runs backwards; write {hi}-{lo}")
        new = list(range(lo, hi + 1))
        for s in new:
            if s not in seeds:
                seeds.append(s)
    return seeds
