"""Reading a key's values out of a log record, in the canonical forms queries compare against.

Log records are Calico's Elasticsearch documents (flows, dns) and Kubernetes audit events. A key's
``path`` walks dicts; lists met on the way are flattened, so ``rrsets.rdata`` yields every rdata of
every rrset. Values are typed as the schema says: integers, IP addresses, dates (epoch seconds),
domains lower-cased, enumerations and protocol/DNS-type names canonical. The embedded log store and
``evaluate.matches`` both use these functions, so they agree by construction on what a record holds.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from evaluator.query.schema import FieldSpec, FieldType
from evaluator.query.values import normalise, to_date, to_dns_type, to_domain, to_int, to_proto

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Stored = int | float | str | IPAddress


def raw_values(spec: FieldSpec, record: Mapping[str, Any]) -> list[Any]:
    """The values at ``spec.path`` (None and empty lists mean no value)."""
    current: list[Any] = [record]
    for segment in spec.path:
        following: list[Any] = []
        for item in current:
            if isinstance(item, Mapping) and segment in item:
                found = item[segment]
                if isinstance(found, list):
                    following.extend(found)
                elif found is not None:
                    following.append(found)
        current = following
        if not current:
            return []
    return [value for value in current if value is not None]


def stored_values(spec: FieldSpec, record: Mapping[str, Any]) -> list[Stored]:
    """The typed values of ``spec`` in ``record``; ValueError says what is wrong with a bad one."""
    return [stored_value(spec, value) for value in raw_values(spec, record)]


def stored_value(spec: FieldSpec, value: Any) -> Stored:
    if isinstance(value, Mapping | list):
        raise ValueError(f"expected a single {spec.type.value} value, found {type(value).__name__}")
    kind = spec.type
    if kind is FieldType.INT:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"expected an integer, found {value!r}")
        return to_int(value, spec)
    if kind is FieldType.IP:
        if not isinstance(value, str):
            raise ValueError(f"expected an IP address, found {value!r}")
        try:
            return ipaddress.ip_address(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address") from None
    if kind is FieldType.DATE:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"expected a date, found {value!r}")
        return to_date(value).timestamp()
    text = value if isinstance(value, str) else str(value)
    # Text keys are data, not queries: odd values are kept rather than refused, in canonical form
    # where one exists so that a query's normalised value finds them.
    try:
        if kind is FieldType.DOMAIN:
            return to_domain(text, pattern=True)
        if kind is FieldType.DNS_TYPE:
            return to_dns_type(value if isinstance(value, int) else text)
        if kind is FieldType.PROTO:
            return to_proto(value if isinstance(value, int) else text)
        if spec.allowed:
            return str(normalise(spec, text))
    except ValueError:
        pass
    if kind is FieldType.DOMAIN:
        return text.lower()
    return text
