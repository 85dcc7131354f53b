"""HTML of the Alerts page and its sign-in page. Every value from the database or the URL goes through
``html.escape``; the one inline script (times in the browser's zone) and style are allowed by hash in the
Content-Security-Policy, so no other script can run even if escaping were ever missed."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from api.resources import StoredObject
from api.web.auth import Viewer
from api.web.filters import LAST, PAGE_SIZE, REFRESH, SHOW, SORT, Filters
from evaluator.alerts import AlertStatus
from evaluator.engine.notify import labels_for
from evaluator.events import Event, EventPage, rfc3339
from evaluator.vocabulary import DATASETS

Row = tuple[StoredObject, AlertStatus | None]

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.2rem 1.5rem; color: #222; }
header { display: flex; justify-content: space-between; align-items: baseline; }
h1 { font-size: 1.4rem; margin: 0; } h2 { font-size: 1.1rem; margin-top: 1.4rem; }
table { border-collapse: collapse; width: 100%; font-size: 0.88rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } tr.selected td { background: #fff6d5; }
.bad { color: #b00020; font-weight: 600; } .good { color: #1b7f3b; } .muted { color: #777; }
.health { display: inline-block; width: 0.8rem; height: 0.8rem; border-radius: 50%; margin-right: 0.3rem; }
.health-ok { background: #1b7f3b; } .health-bad { background: #b00020; } .health-none { background: #bbb; }
.sev { font-weight: 600; padding: 0 0.4rem; border-radius: 0.2rem; color: #fff; }
.sev-critical { background: #b00020; } .sev-high { background: #e65100; }
.sev-medium { background: #f9a825; color: #222; } .sev-low { background: #1565c0; }
form.filters { display: flex; flex-wrap: wrap; gap: 0.6rem; align-items: end; margin: 0.5rem 0; }
form.filters label { display: flex; flex-direction: column; font-size: 0.8rem; }
form.inline { display: inline; margin: 0; }
pre { margin: 0.3rem 0; white-space: pre-wrap; word-break: break-all; font-size: 0.8rem; }
.errors { border: 1px solid #b00020; background: #fdecea; padding: 0.4rem 0.8rem; }
.paging a, .paging span { margin-right: 1rem; } .signin { max-width: 32rem; }
.signin input { width: 100%; margin: 0.2rem 0 0.8rem; } time { white-space: nowrap; }
"""

# Shows each <time datetime=...> in the browser's zone, to the second, with the zone's offset; auto-refresh.
SCRIPT = """
(function () {
  function two(n) { return (n < 10 ? "0" : "") + n; }
  document.querySelectorAll("time[datetime]").forEach(function (t) {
    var d = new Date(t.getAttribute("datetime"));
    if (isNaN(d.getTime())) { return; }
    var off = -d.getTimezoneOffset(), sign = off < 0 ? "-" : "+";
    off = Math.abs(off);
    t.title = t.getAttribute("datetime");
    t.textContent = d.getFullYear() + "-" + two(d.getMonth() + 1) + "-" + two(d.getDate()) + " " +
      two(d.getHours()) + ":" + two(d.getMinutes()) + ":" + two(d.getSeconds()) +
      " UTC" + sign + two(Math.floor(off / 60)) + ":" + two(off % 60);
    t.className = "local";
  });
  // Auto-refresh (same URL, so the same filters), held while a record is open or a field is being edited.
  var body = document.body, every = parseInt(body.getAttribute("data-refresh") || "0", 10);
  if (every > 0) {
    setInterval(function () {
      var active = document.activeElement, tag = active ? active.tagName : "";
      if (!document.querySelector("details[open]") && !/^(INPUT|SELECT|TEXTAREA|BUTTON)$/.test(tag)) {
        location.replace(body.getAttribute("data-refresh-url"));
      }
    }, every * 1000);
  }
})();
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; script-src {_sha256(SCRIPT)}; style-src {_sha256(CSS)}; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
NOT_RUN = '<span class="muted">not run yet</span>'


def text(value: object) -> str:
    return escape("" if value is None else str(value))


def time_html(value: datetime | None) -> str:
    """UTC to the second in the HTML (readable without scripts); the script shows it in the local zone."""
    if value is None:
        return '<span class="muted">-</span>'
    stamp = rfc3339(value.replace(microsecond=0))
    return f'<time datetime="{text(rfc3339(value))}">{text(stamp)}</time>'


def severity_class(severity: int) -> str:
    if severity >= 80:
        return "sev-critical"
    if severity >= 50:
        return "sev-high"
    if severity >= 20:
        return "sev-medium"
    return "sev-low"


def document(title: str, body: str, *, refresh_url: str | None = None, refresh: str = "off") -> str:
    meta = body_attributes = ""
    if refresh_url is not None and refresh != "off":
        # without scripts a plain refresh; with them the script's, which waits while a record is open
        meta = f'<noscript><meta http-equiv="refresh" content="{text(refresh)}; url={text(refresh_url)}"></noscript>'
        body_attributes = f' data-refresh="{text(refresh)}" data-refresh-url="{text(refresh_url)}"'
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{text(title)}</title>{meta}<style>{CSS}</style></head><body{body_attributes}>{body}"
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def signin_page(*, problem: str | None, next_url: str, proxy_header: str | None) -> str:
    problem_html = f'<p class="errors" id="problem">{text(problem)}</p>' if problem else ""
    proxy = ""
    if proxy_header:
        proxy = f'<p class="muted">Or sign in through the authenticating proxy (it sends {text(proxy_header)}).</p>'
    body = (
        '<main class="signin"><h1>policywatch: sign in</h1>'
        f"{problem_html}"
        "<p>Paste a read or write token of this evaluator. The server keeps a signed session in a cookie; "
        "the token itself is not stored in the browser.</p>"
        '<form method="post" action="/ui/signin">'
        '<label for="token">Token</label>'
        '<input id="token" name="token" type="password" autocomplete="off" required>'
        '<label for="name">Your name (shown on events you dismiss; optional)</label>'
        '<input id="name" name="name" type="text" maxlength="64" autocomplete="username">'
        f'<input type="hidden" name="next" value="{text(next_url)}">'
        '<button id="signin" type="submit">Sign in</button></form>'
        f"{proxy}</main>"
    )
    return document("policywatch: sign in", body)


def message_page(title: str, message: str, *, link: str = "/ui", link_text: str = "back to the Alerts page") -> str:
    body = (
        f'<main><h1>{text(title)}</h1><p class="errors" id="problem">{text(message)}</p>'
        f'<p><a href="{text(link)}">{text(link_text)}</a></p></main>'
    )
    return document(f"policywatch: {title}", body)


def _silence_url(alertmanager_url: str, labels: Mapping[str, str]) -> str:
    matchers = ", ".join(f'{name}="{value}"' for name, value in labels.items())
    return f"{alertmanager_url.rstrip('/')}/#/silences/new?filter={quote('{' + matchers + '}', safe='')}"


def _silence_link(alertmanager_url: str | None, labels: Mapping[str, str]) -> str:
    if not alertmanager_url:
        return ""
    url = _silence_url(alertmanager_url, labels)
    return f'<a class="silence" href="{text(url)}" target="_blank" rel="noopener noreferrer">silence</a>'


def _health(status: AlertStatus | None) -> str:
    if status is None:
        return f'<span class="health health-none"></span>{NOT_RUN}'
    if status.healthy:
        return '<span class="health health-ok"></span><span class="good">healthy</span>'
    return '<span class="health health-bad"></span><span class="bad">unhealthy</span>'


def _alert_row(stored: StoredObject, status: AlertStatus | None, filters: Filters, am: str | None) -> str:
    spec: dict[str, Any] = stored.spec
    errors = status.errorConditions if status else ()
    error_html = "<br>".join(f"{text(e.type)}: {text(e.message)}" for e in errors[-3:])
    active = NOT_RUN if status is None else ("active" if status.active else '<span class="bad">inactive</span>')
    cells = [
        f'<a href="{text(filters.url(alert=stored.name, page=""))}">{text(stored.name)}</a>',
        _health(status),
        text(spec.get("dataSet")),
        f'<span class="sev {severity_class(int(spec.get("severity") or 0))}">{text(spec.get("severity"))}</span>',
        text(spec.get("period")),
        active,
        text(status.executionState if status else ""),
        time_html(status.lastExecuted if status else None),
        time_html(status.lastEvent if status else None),
        error_html,
        _silence_link(am, {"alertname": stored.name}),
    ]
    selected = ' class="selected"' if stored.name == filters.alert else ""
    return f'<tr{selected} data-alert="{text(stored.name)}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _instance_labels(event: Event, spec: Mapping[str, Any] | None) -> dict[str, str]:
    aggregate_by = tuple(spec.get("aggregateBy") or ()) if spec else ()
    return labels_for(event.alert, event.severity, event.record, aggregate_by)


def _event_row(
    event: Event, *, spec: Mapping[str, Any] | None, viewer: Viewer, filters: Filters, am: str | None
) -> str:
    alert_html = f'<a href="{text(filters.url(alert=event.alert, page=""))}">{text(event.alert)}</a>'
    if spec is None:
        alert_html = f'{text(event.alert)} <span class="muted">(deleted)</span>'
    record = json.dumps(event.record, indent=2, sort_keys=True, default=str)
    details = (
        "<details><summary>record</summary>"
        f'<p>{text(event.description)}</p><pre class="record">{text(record)}</pre></details>'
    )
    if event.dismissed is not None:
        state = f'dismissed by <span class="by">{text(event.dismissed.by)}</span> {time_html(event.dismissed.at)}'
    elif viewer.can_write and event.id:
        csrf = f'<input type="hidden" name="csrf" value="{text(viewer.csrf)}">' if viewer.csrf else ""
        state = (
            f'<form class="inline" method="post" action="/ui/events/{text(event.id)}/dismiss">{csrf}'
            f'<input type="hidden" name="next" value="{text(filters.url())}">'
            '<button class="dismiss" type="submit">dismiss</button></form>'
        )
    else:
        state = '<span class="muted">open</span>'
    cells = [
        time_html(event.time),
        alert_html,
        f'<span class="sev {severity_class(event.severity)}">{text(event.severity)}</span>',
        text(event.summary or event.description) + details,
        state,
        _silence_link(am, _instance_labels(event, spec)) if spec is not None else "",
    ]
    return f'<tr class="event" data-id="{text(event.id)}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _table(headers: Iterable[str], rows: Sequence[str], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _select(name: str, options: Iterable[tuple[str, str]], current: str) -> str:
    items = "".join(
        f'<option value="{text(v)}"{" selected" if v == current else ""}>{text(label)}</option>' for v, label in options
    )
    return f'<select id="f-{name}" name="{name}">{items}</select>'


def _filters_form(filters: Filters, alert_names: Sequence[str]) -> str:
    raw = filters.raw

    def field(label: str, control: str) -> str:
        return f"<label>{text(label)}{control}</label>"

    def box(name: str, placeholder: str, size: int) -> str:
        value = text(raw.get(name, ""))
        return f'<input id="f-{name}" name="{name}" value="{value}" placeholder="{text(placeholder)}" size="{size}">'

    names = sorted({*alert_names, *([filters.alert] if filters.alert else [])})
    return (
        '<form class="filters" method="get" action="/ui" id="filters">'
        + field("alert", _select("alert", [("", "any"), *((n, n) for n in names)], filters.alert))
        + field("data set", _select("dataset", [("", "any"), *((d, d) for d in DATASETS)], filters.dataset))
        + field("severity from", box("sevmin", "1", 4))
        + field("to", box("sevmax", "100", 4))
        + field("last", _select("last", [("", "any time"), *((k, k) for k in LAST)], filters.last))
        + field("since (RFC 3339)", box("since", "e.g. 2026-01-02T03:04:05Z", 22))
        + field("until", box("until", "", 22))
        + field("show", _select("show", [(s, s) for s in SHOW], filters.show))
        + field(
            "sort by", _select("sort", [(s, {"time": "newest", "severity": "severity"}[s]) for s in SORT], filters.sort)
        )
        + field(
            "refresh (s)",
            _select("refresh", [(r, r) for r in dict.fromkeys((*REFRESH, filters.refresh))], filters.refresh),
        )
        + '<button id="apply" type="submit">apply</button> <a href="/ui?refresh=off" id="reset">reset</a></form>'
    )


def _paging(filters: Filters, events: EventPage) -> str:
    start = (filters.page - 1) * PAGE_SIZE
    shown = f"events {start + 1}-{start + len(events.items)} of {events.total}" if events.items else ""
    links = [f'<span id="shown">{text(shown)}</span>']
    if filters.page > 1:
        links.append(f'<a id="newer" href="{text(filters.url(page=filters.page - 1))}">newer</a>')
    if start + len(events.items) < events.total:
        links.append(f'<a id="older" href="{text(filters.url(page=filters.page + 1))}">older</a>')
    return f'<p class="paging">{"".join(links)}</p>'


def alerts_page(
    *,
    viewer: Viewer,
    alerts: Sequence[Row],
    more_alerts: bool,
    max_alerts: int,
    events: EventPage,
    specs: Mapping[str, Mapping[str, Any]],
    filters: Filters,
    errors: Sequence[str],
    alertmanager_url: str | None,
) -> str:
    alert_rows = [_alert_row(stored, status, filters, alertmanager_url) for stored, status in alerts]
    alert_headers = (
        *("name", "health", "dataSet", "severity", "period", "active", "executionState"),
        *("lastExecuted", "lastEvent", "errorConditions", ""),
    )
    alerts_html = _table(alert_headers, alert_rows, "No GlobalAlerts.")
    if more_alerts:
        alerts_html += f'<p class="muted">Only the first {max_alerts} GlobalAlerts (by name) are shown.</p>'
    event_rows = [
        _event_row(e, spec=specs.get(e.alert), viewer=viewer, filters=filters, am=alertmanager_url)
        for e in events.items
    ]
    events_html = _table(("time", "alert", "severity", "summary", "state", ""), event_rows, "No events.")
    errors_html = ""
    if errors:
        errors_html = '<ul class="errors" id="errors">' + "".join(f"<li>{text(e)}</li>" for e in errors) + "</ul>"
    signout = ""
    if viewer.via == "session":
        signout = (
            '<form class="inline" method="post" action="/ui/signout">'
            f'<input type="hidden" name="csrf" value="{text(viewer.csrf)}">'
            '<button id="signout" type="submit">sign out</button></form>'
        )
    role = "write" if viewer.can_write else "read"
    body = (
        "<header><h1>policywatch: Alerts</h1>"
        f'<span id="viewer">{text(viewer.name)} ({role}) {signout}</span></header>'
        f'<h2>GlobalAlerts</h2><div id="alerts">{alerts_html}</div>'
        f"<h2>Events</h2>{errors_html}{_filters_form(filters, [stored.name for stored, _ in alerts])}"
        f'{_paging(filters, events)}<div id="events">{events_html}</div>'
    )
    return document("policywatch: Alerts", body, refresh_url=filters.url(), refresh=filters.refresh)


def next_url(value: str | None) -> str:
    """Where to go after a form: only a path of this page (never another site)."""
    if value and (value == "/ui" or value.startswith("/ui?")) and "\\" not in value:
        return value
    return "/ui"


def signin_url(next_path: str) -> str:
    return "/ui/signin?" + urlencode({"next": next_path})
