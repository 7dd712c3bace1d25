"""Figures the benchmarks share."""


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of the values; NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
