"""Comparing the rows of a query with ORDER BY ... LIMIT when rows tie at the limit."""


def a_valid_top(via: list[tuple], full: list[tuple], order: int, limit: int) -> bool:
    """Whether `via` is one right answer of ORDER BY <order> LIMIT <limit> over `full`: rows that tie at
    the limit may be any of the tied ones (an engine need not pick the same twice)."""
    from collections import Counter

    want = min(limit, len(full))
    top_values = sorted((r[order] for r in full), key=lambda v: (v is None, v), reverse=True)[:want]
    return (len(via) == want and not Counter(via) - Counter(full)
            and sorted((r[order] for r in via), key=lambda v: (v is None, v), reverse=True) == top_values)  # fmt: skip
