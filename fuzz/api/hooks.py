"""schemathesis hooks for `make api-fuzz`: the relations the OpenAPI document states in words
because JSON Schema cannot compare two values, applied to the requests schemathesis means to be
valid (positive mode). Negative requests are left alone: they break the schema itself.

- `spec.rules[*].fault.delay.jitter_ms` is at most `fixed_delay_ms`;
- `spec.rules[*].fault.reset: true` does not come with an `abort`;
- `spec.window.end` is after `spec.window.start`;
- `If-Match` and `If-None-Match` are not both given;
- `reason` (GET /v1/config) comes only with `refused`;
- `namespaces` (GET /v1/config) comes only with `proxy=waypoint`, `destinations` only with
  `proxy=waypoint` or `proxy=gateway`;
- the body of `PUT /v1/policies/{name}` names the policy of the path;
- each of `spec.guards` has exactly one of `success_condition` or `failure_condition`, a
  name no other guard of the policy has, and a query that is PromQL (a parser checks it;
  positive requests send `up`, a query every PromQL parser reads).

One change serves the time budget, not the document: a long-poll (`GET /v1/config` with the
current `version`) is held for `wait`, up to 300 s; every `wait` above 1 s is sent as `1s`, so a
held request ends well inside the request timeout. The hold itself is tested in boifi-server's
own tests.
"""

import calendar
import re
import sys

import schemathesis

# The policy schema nests deeply; CPython 3.11's `ast.parse`, which Hypothesis calls to describe
# a strategy, fails with "AST constructor recursion depth mismatch" near the default limit.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|([+-])(\d{2}):(\d{2}))$"
)


def _instant(text):
    """Seconds since 1970 of an RFC 3339 time the document's pattern allows, or None."""
    m = _TIME.match(text) if isinstance(text, str) else None
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    seconds = calendar.timegm((year, month, day, hour, minute, 0, 0, 0, 0)) + second
    fraction = float("0" + m.group(7)) if m.group(7) else 0.0
    offset = 0
    if m.group(9):
        offset = (int(m.group(10)) * 60 + int(m.group(11))) * 60
        offset = offset if m.group(9) == "+" else -offset
    return seconds + fraction - offset


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fix_policy(body):
    spec = body.get("spec") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        return
    for rule in spec.get("rules") or []:
        fault = (rule or {}).get("fault") if isinstance(rule, dict) else None
        if isinstance(fault, dict) and fault.get("reset") is True and isinstance(fault.get("abort"), dict):
            del fault["reset"]
        delay = ((rule or {}).get("fault") or {}).get("delay") if isinstance(rule, dict) else None
        if isinstance(delay, dict) and _number(delay.get("jitter_ms")) and _number(delay.get("fixed_delay_ms")):
            if delay["jitter_ms"] > delay["fixed_delay_ms"]:
                delay["jitter_ms"], delay["fixed_delay_ms"] = delay["fixed_delay_ms"], delay["jitter_ms"]
    names = set()
    for i, guard in enumerate(spec.get("guards") or []):
        if not isinstance(guard, dict):
            continue
        if isinstance(guard.get("query"), str):
            guard["query"] = "up"
        success, failure = guard.get("success_condition"), guard.get("failure_condition")
        if (success is None) == (failure is None):
            guard.pop("failure_condition", None)
            if success is None:
                guard["success_condition"] = "result >= 0"
        name = guard.get("name")
        if isinstance(name, str):
            while name in names:
                name = f"g{i}-{len(names)}" if len(name) > 50 else name + "x"
            guard["name"] = name
            names.add(name)
    window = spec.get("window")
    if isinstance(window, dict):
        start, end = _instant(window.get("start")), _instant(window.get("end"))
        if start is not None and end is not None and end <= start:
            if end < start:
                window["start"], window["end"] = window["end"], window["start"]
            else:
                window["start"], window["end"] = "1971-01-01T00:00:00Z", "9999-12-28T00:00:00Z"


_WAIT = re.compile(r"^\+?(\d+)(ms|s|m)?$")


def _cap_wait(query):
    m = _WAIT.match(str(query.get("wait", "")))
    if m is not None:
        ms = int(m.group(1)) * {"ms": 1, "s": 1000, "m": 60_000, None: 1000}[m.group(2)]
        if ms > 1000:
            query["wait"] = "1s"


@schemathesis.hook
def before_call(context, case, kwargs):
    # Every phase sends through here (stateful too), and schemathesis revalidates what it changes.
    if case.query:
        _cap_wait(case.query)
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    _fix_policy(case.body)
    name = (case.path_parameters or {}).get("name")
    metadata = case.body.get("metadata") if isinstance(case.body, dict) else None
    if case.method.upper() == "PUT" and isinstance(name, str) and isinstance(metadata, dict):
        metadata["name"] = name
    headers = case.headers
    if headers:
        names = {name.lower(): name for name in headers}
        if "if-match" in names and "if-none-match" in names:
            del headers[names["if-none-match"]]
    query = case.query
    if query and "reason" in query and "refused" not in query:
        query["refused"] = 0
    if query and "namespaces" in query:
        query["proxy"] = "waypoint"
    elif query and "destinations" in query and query.get("proxy") not in ("waypoint", "gateway"):
        query["proxy"] = "gateway"
