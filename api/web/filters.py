"""The Alerts page's filters, read from the URL (so a filtered view is a link to share) and written back into
links (paging, the form, auto-refresh). Bad values are collected as messages naming the field, never a 500."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from evaluator.events import EventQuery
from evaluator.vocabulary import DATASETS

PAGE_SIZE = 50
MAX_PAGE = 100_000
LAST = {"15m": 15, "1h": 60, "6h": 360, "24h": 1440, "7d": 10080, "30d": 43200}  # minutes
SHOW = ("open", "dismissed", "all")
SORT = ("time", "severity")
REFRESH = ("off", "30", "60", "300")  # offered in the form; any whole number of seconds in REFRESH_RANGE is taken
REFRESH_RANGE = (2, 3600)
DEFAULT_REFRESH = "60"


@dataclass(frozen=True, slots=True)
class Filters:
    alert: str = ""
    dataset: str = ""
    sevmin: int | None = None
    sevmax: int | None = None
    last: str = ""
    since: datetime | None = None
    until: datetime | None = None
    show: str = "open"
    sort: str = "time"
    page: int = 1
    refresh: str = DEFAULT_REFRESH
    raw: Mapping[str, str] = field(default_factory=dict, compare=False)  # as given, to refill the form

    def params(self, **changes: object) -> dict[str, str]:
        """The non-default filters as URL parameters, with ``changes`` applied (e.g. ``page=2``)."""
        values = {
            "alert": self.alert,
            "dataset": self.dataset,
            "sevmin": "" if self.sevmin is None else str(self.sevmin),
            "sevmax": "" if self.sevmax is None else str(self.sevmax),
            "last": self.last,
            "since": self.raw.get("since", ""),
            "until": self.raw.get("until", ""),
            "show": "" if self.show == "open" else self.show,
            "sort": "" if self.sort == "time" else self.sort,
            "page": "" if self.page == 1 else str(self.page),
            "refresh": "" if self.refresh == DEFAULT_REFRESH else self.refresh,
        }
        values.update({k: "" if v is None else str(v) for k, v in changes.items()})
        return {k: v for k, v in values.items() if v}

    def url(self, **changes: object) -> str:
        query = urlencode(self.params(**changes))
        return "/ui" + (f"?{query}" if query else "")

    def event_query(self, *, dataset_alerts: tuple[str, ...] | None, now: datetime) -> EventQuery:
        since = self.since
        if self.last:
            since = max(since or datetime.min.replace(tzinfo=UTC), now - timedelta(minutes=LAST[self.last]))
        return EventQuery(
            alert=self.alert or None,
            alerts=dataset_alerts,
            severity_min=self.sevmin,
            severity_max=self.sevmax,
            since=since,
            until=self.until,
            dismissed={"open": False, "dismissed": True, "all": None}[self.show],
            order=self.sort,
            limit=PAGE_SIZE,
            offset=(self.page - 1) * PAGE_SIZE,
        )


def parse_filters(query: Mapping[str, str]) -> tuple[Filters, list[str]]:
    """Filters from the URL's parameters, and one message per bad value (the field, the value, what is right)."""
    errors: list[str] = []
    raw = {k: v.strip() for k, v in query.items()}

    def choice(name: str, allowed: tuple[str, ...], default: str) -> str:
        value = raw.get(name, "") or default
        if value not in allowed:
            errors.append(f"{name}: {value!r} is not one of {', '.join(a for a in allowed if a)}")
            return default
        return value

    def integer(name: str, low: int, high: int) -> int | None:
        value = raw.get(name, "")
        if not value:
            return None
        if not value.isdigit() or not low <= int(value) <= high:
            errors.append(f"{name}: {value!r} is not a whole number from {low} to {high}")
            return None
        return int(value)

    def moment(name: str) -> datetime | None:
        value = raw.get(name, "")
        if not value:
            return None
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            errors.append(f"{name}: {value!r} is not an RFC 3339 time such as 2026-01-02T03:04:05Z")
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    def refresh() -> str:
        value = raw.get("refresh", "") or DEFAULT_REFRESH
        if value == "off":
            return value
        seconds = integer("refresh", *REFRESH_RANGE)
        return DEFAULT_REFRESH if seconds is None else str(seconds)

    alert = raw.get("alert", "")
    if len(alert) > 253:
        errors.append(f"alert: a GlobalAlert name has at most 253 characters, got {len(alert)}")
        alert = ""
    filters = Filters(
        alert=alert,
        dataset=choice("dataset", ("", *DATASETS), ""),
        sevmin=integer("sevmin", 1, 100),
        sevmax=integer("sevmax", 1, 100),
        last=choice("last", ("", *LAST), ""),
        since=moment("since"),
        until=moment("until"),
        show=choice("show", SHOW, "open"),
        sort=choice("sort", SORT, "time"),
        page=integer("page", 1, MAX_PAGE) or 1,
        refresh=refresh(),
        raw=raw,
    )
    if filters.sevmin is not None and filters.sevmax is not None and filters.sevmin > filters.sevmax:
        errors.append(f"sevmin ({filters.sevmin}) must not be above sevmax ({filters.sevmax})")
        filters = replace(filters, sevmin=None, sevmax=None)
    if filters.since is not None and filters.until is not None and filters.until <= filters.since:
        errors.append("until must be after since")
        filters = replace(filters, since=None, until=None)
    return filters, errors
