"""Shrinking an input while a predicate holds (tools/tm-check-allocator).

Delta debugging over bytes: remove chunks of halving sizes while the input still shows what
it showed, within a budget of runs and seconds. Op programs (harness/FORMAT.md) decode any
byte string, so every candidate is a valid input; removing bytes removes or re-slices ops.
"""
import time


def minimise(data, still_fails, max_runs=400, max_seconds=60.0):
    """Returns (smallest bytes found for which still_fails holds, runs made).

    still_fails(bytes) -> bool runs the candidate; `data` itself must satisfy it."""
    best = bytes(data)
    runs = 0
    deadline = time.monotonic() + max_seconds
    chunk = max(1, len(best) // 2)
    while chunk >= 1:
        progressed = False
        start = 1 if len(best) > 1 else 0  # keep the header byte: it selects format and flags
        i = start
        while i < len(best):
            if runs >= max_runs or time.monotonic() > deadline:
                return best, runs
            candidate = best[:i] + best[i + chunk:]
            runs += 1
            if candidate != best and still_fails(candidate):
                best = candidate
                progressed = True
            else:
                i += chunk
        if not progressed:
            chunk //= 2
    return best, runs
