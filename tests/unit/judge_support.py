"""Cohort counts for the judge's unit tests: four edges and the shares of requests above each."""

from __future__ import annotations

from performance_agent.judge import BucketCounts, CohortCounts

EDGES = [0.1, 0.2, 0.4, 0.8]
#: Shares above the edges of the baseline shape (80%, 40%, 10%, 1%).
NORMAL = (0.8, 0.4, 0.1, 0.01)


def cohort(
    requests: float,
    shares_above: tuple[float, ...] = NORMAL,
    *,
    instances: int = 1,
    exposure_s: float | None = None,
    errors: float | None = 0.0,
    preemptions: float | None = 0.0,
) -> CohortCounts:
    counts_le = [float(round(requests * (1 - share))) for share in shares_above]
    histogram = BucketCounts(edges=EDGES, counts_le=counts_le, total=requests)
    return CohortCounts(
        instances=instances,
        exposure_s=exposure_s,
        requests=requests,
        errors=errors,
        preemptions=preemptions,
        histograms={"ttft_s": histogram},
    )
