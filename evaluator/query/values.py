"""Normalising one value for one key: the typed checks behind ``validate`` and the log store.

Every function takes the raw value and returns its canonical form or raises ``ValueError`` with the
reason; callers add the key and position. Canonical forms: IPs and CIDRs compressed (host bits of a
CIDR cleared), domains lower case and IDNA-encoded, dates RFC 3339 in UTC with a ``Z``, DNS types by
name where the table has one, protocols by name where known.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from functools import lru_cache

import idna

from evaluator.query.ast import Scalar
from evaluator.query.schema import DNS_TYPES, PROTO_NUMBERS, FieldSpec, FieldType

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_DNS_NAMES = {number: name for name, number in DNS_TYPES.items()}
_PROTO_NAMES = {number: name for name, number in PROTO_NUMBERS.items()}
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})?)?")
_DOMAIN = re.compile(r"[a-z0-9_.*?/:-]+")
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_INTEGER = re.compile(r"[+-]?[0-9]+")


def check_text(value: str) -> str:
    bad = _BAD_CHARS.search(value)
    if bad is not None:
        raise ValueError(f"control character or lone surrogate U+{ord(bad.group()):04X} is not allowed")
    return value


def to_int(value: Scalar, spec: FieldSpec) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"expected an integer, not {value}")
        number = int(value)
    elif isinstance(value, int):
        number = value
    elif _INTEGER.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        raise ValueError(f"expected an integer, not {value!r}")
    if not spec.minimum <= number <= spec.maximum:
        raise ValueError(f"{number} is out of range; expected {_range(spec)}")
    return number


def _range(spec: FieldSpec) -> str:
    if spec.maximum == 2**63 - 1:
        return f"an integer >= {spec.minimum}"
    return f"an integer from {spec.minimum} to {spec.maximum}"


def to_network(value: Scalar) -> IPNetwork:
    if not isinstance(value, str):
        raise ValueError(f"expected an IP address or CIDR, not the number {value}")
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address or CIDR (examples: 198.51.100.1, 192.0.2.0/24, 2001:db8::/64)"
        ) from None


def to_ip_text(value: Scalar) -> str:
    network = to_network(value)
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


def to_date(value: Scalar) -> datetime:
    if isinstance(value, bool):
        raise ValueError("expected a date")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"{value} is out of range for epoch seconds") from None
    match = _DATE.fullmatch(value.strip())
    if match is None:
        raise ValueError(
            f'{value!r} is not a date; expected RFC 3339 (2006-01-02T15:04:05Z), "2006-01-02 15:04:05" or "2006-01-02"'
        )
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    text = f"{year}-{month}-{day}T{hour or '00'}:{minute or '00'}:{second or '00'}"
    if fraction:
        text += fraction[:7].ljust(7, "0")
    text += "+00:00" if zone in (None, "Z", "z") else zone
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError as error:
        raise ValueError(f"{value!r} is not a valid date: {error}") from None


def format_date(moment: datetime) -> str:
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def to_domain(value: Scalar, *, pattern: bool = False) -> str:
    """A domain as Calico and browsers write it: UTS 46 mapping (IDNA 2008, non-transitional, so ``straße.de`` is
    ``xn--strae-oqa.de``), lower case, one trailing dot trimmed."""
    text = check_text(str(value)).strip().lower()
    if not text.isascii():
        if pattern:
            raise ValueError(f"write the internationalised name {text!r} in its IDNA (xn--) form to use wildcards")
        text = _uts46(text, value)
    if len(text) > 1 and text.endswith("."):
        text = text[:-1]
    if not _DOMAIN.fullmatch(text) or (not pattern and ("?" in text)):
        raise ValueError(f"{value!r} is not a valid name; expected letters, digits, '-', '_', '.' and '/'")
    return text


def _uts46(text: str, value: Scalar) -> str:
    try:
        mapped = idna.uts46_remap(text, std3_rules=False, transitional=False)
        # Label by label, so that ASCII labels DNS allows but IDNA does not (``_sip``) stay as they are.
        return ".".join(label if label.isascii() else idna.alabel(label).decode("ascii") for label in mapped.split("."))
    except (idna.IDNAError, UnicodeError) as error:
        raise ValueError(f"{value!r} is not a valid internationalised domain name: {error}") from None


def to_dns_type(value: Scalar) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"expected a DNS type, not {value}")
        number = int(value)
    else:
        text = str(value).strip().upper()
        if text in DNS_TYPES:
            return text
        if not text.startswith("#") or not text[1:].isdigit():
            raise ValueError(f"{value!r} is not a DNS type; expected one of {', '.join(DNS_TYPES)} or #0-#65535")
        number = int(text[1:])
    if not 0 <= number <= 65535:
        raise ValueError(f"DNS type #{number} is out of range; expected #0-#65535")
    return _DNS_NAMES.get(number, f"#{number}")


def to_proto(value: Scalar) -> str:
    if isinstance(value, str) and not value.strip().isdigit():
        text = value.strip().lower()
        if text in PROTO_NUMBERS:
            return text
        raise ValueError(f"{value!r} is not a protocol; expected one of {', '.join(PROTO_NUMBERS)} or 0-255")
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"expected a protocol name or number, not {value}")
    number = int(value)
    if not 0 <= number <= 255:
        raise ValueError(f"protocol number {number} is out of range; expected 0-255")
    return _PROTO_NAMES.get(number, str(number))


def to_label(value: Scalar) -> str:
    text = check_text(str(value))
    name, equals, _ = text.partition("=")
    if not equals or not name:
        raise ValueError(f"{value!r} is not a label; expected LABEL_NAME=LABEL_VALUE, e.g. application=postgres")
    return text


@lru_cache(maxsize=64)
def _canonical(allowed: tuple[str, ...]) -> dict[str, str]:
    return {option.lower(): option for option in allowed}


def normalise(spec: FieldSpec, value: Scalar, *, pattern: bool = False) -> Scalar:
    """The canonical form of ``value`` for ``spec`` (``pattern``: a set member holding wildcards)."""
    kind = spec.type
    if kind is FieldType.INT:
        return to_int(value, spec)
    if kind is FieldType.IP:
        return to_ip_text(value)
    if kind is FieldType.DATE:
        return format_date(to_date(value))
    if kind is FieldType.DOMAIN:
        return to_domain(value, pattern=pattern)
    if kind is FieldType.DNS_TYPE:
        return check_text(str(value)).upper() if pattern else to_dns_type(value)
    if kind is FieldType.PROTO:
        return check_text(str(value)).lower() if pattern else to_proto(value)
    if kind is FieldType.LABEL:
        return check_text(str(value)) if pattern else to_label(value)
    text = check_text(str(value))
    if spec.allowed and not pattern:
        canonical = _canonical(spec.allowed)
        if text.lower() not in canonical:
            raise ValueError(f"{value!r} is not allowed; expected one of {', '.join(spec.allowed)}")
        return canonical[text.lower()]
    return text
