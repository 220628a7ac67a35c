"""Caps on what one scraped page may hold, so a hostile or broken server cannot flood memory or storage.

Why per page, and checked while parsing: a page of 150,000 distinct `model_name` values was
stored as a 183 MB snapshot per scrape, and a page of a million metric names held the event loop
for seconds. The byte budget alone does not stop either (a million short lines fit in 10 MB).
Everything is counted as the parser goes, so it stops at the first one too many: families on the
whole page; series, distinct values per label and the length of each value on the kept samples
only (what the adapters read and the store keeps). A page over any cap is refused whole: nothing of
it is stored, and the refusal names the setting to raise.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ("UNLIMITED", "PageLimitError", "PageLimits", "count_label_values")


@dataclass(frozen=True, slots=True)
class PageLimits:
    """The caps, with the defaults of `PERF_AGENT_SCRAPE_MAX_*`; see docs/operations.md."""

    max_families: int = 10_000
    max_series: int = 50_000
    max_label_values: int = 256
    max_label_value_length: int = 1024


#: No cap at all: parsing fixtures, benchmarks and pages the agent wrote itself.
UNLIMITED = PageLimits(
    max_families=1 << 62, max_series=1 << 62, max_label_values=1 << 62, max_label_value_length=1 << 62
)


class PageLimitError(ValueError):
    """The page holds more than a cap allows; the message names the setting and the cap."""

    def __init__(self, setting: str, limit: int, what: str) -> None:
        super().__init__(f"the page holds {what}, more than {setting} ({limit}); nothing of it was stored")
        self.setting = setting
        self.limit = limit


def count_label_values(labels: dict[str, str], values_by_label: dict[str, set[str]], limits: PageLimits) -> None:
    """Add one label set new to the page to the distinct values seen per label; raise past a cap.

    Runs once per distinct label set of a page (for histograms, once per bucket line), so a value
    already seen costs one set lookup.
    """
    for name, value in labels.items():
        values = values_by_label.get(name)
        if values is None:
            values = values_by_label[name] = set()
        elif value in values:
            continue
        if len(value) > limits.max_label_value_length:
            raise PageLimitError(
                "PERF_AGENT_SCRAPE_MAX_LABEL_VALUE_LENGTH",
                limits.max_label_value_length,
                f"a value of label {name!r} {len(value)} characters long",
            )
        values.add(value)
        if len(values) > limits.max_label_values:
            raise PageLimitError(
                "PERF_AGENT_SCRAPE_MAX_LABEL_VALUES", limits.max_label_values, f"more distinct values of label {name!r}"
            )
