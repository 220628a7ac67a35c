"""`parse_page(keep=...)`: declined families are declared but not parsed; kept ones are checked as ever."""

from __future__ import annotations

import pytest

from performance_agent.metrics.exposition import ExpositionError, parse_page

PAGE = """# HELP a_total Kept.
# TYPE a_total counter
a_total{x="1"} 1
a_total{x="2"} 2
a_created{x="1"} 1.7e9
# HELP b Skipped.
# TYPE b histogram
b_bucket{le="1"} 1
b_bucket{le="+Inf"} 2
b_sum 3
b_count 2
untyped_thing 5
a_total{x="3"} 3
"""


def keep_a(family: str) -> bool:
    return family.startswith("a_")


def test_declined_families_are_declared_without_samples() -> None:
    page = parse_page(PAGE, keep=keep_a)
    assert set(page.families) == {"a_total", "a_created", "b", "untyped_thing"}
    assert page.families["b"].samples == []
    assert set(page.series) == {"a_total", "a_created"}
    assert [s.value for s in page.series["a_total"]] == [1.0, 2.0, 3.0]
    full = parse_page(PAGE)
    assert full.series["a_total"] == page.series["a_total"]


def test_values_in_kept_families_are_still_checked() -> None:
    with pytest.raises(ExpositionError, match=r"^line 4:"):
        parse_page(PAGE.replace('a_total{x="2"} 2', 'a_total{x="2"} two'), keep=keep_a)


def test_garbage_lines_outside_any_family_are_still_refused() -> None:
    with pytest.raises(ExpositionError, match=r"^line 12:"):
        parse_page(PAGE.replace("untyped_thing 5", "<html>not metrics</html>"), keep=keep_a)


def test_values_inside_declined_families_are_not_read() -> None:
    page = parse_page(PAGE.replace('b_bucket{le="1"} 1', 'b_bucket{le="1"} one'), keep=keep_a)
    assert page.families["b"].samples == []
    with pytest.raises(ExpositionError):
        parse_page(PAGE.replace('b_bucket{le="1"} 1', 'b_bucket{le="1"} one'))
