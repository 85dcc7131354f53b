"""A bounded UDP sender, run inside a demo namespace: ``python -m demo.traffic --src A --dst B --port P``.

It stops after ``--count`` datagrams or ``--seconds``, whichever comes first, so a forgotten demo never floods.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
import time
from collections.abc import Sequence


def send(*, src: str, dst: str, port: int, rate: float, count: int, seconds: float, payload: int) -> int:
    """Send up to ``count`` datagrams of ``payload`` bytes at ``rate`` per second; return how many were sent."""
    family = socket.AF_INET6 if ipaddress.ip_address(dst).version == 6 else socket.AF_INET
    data = b"policywatch-demo".ljust(payload, b".")[:payload]
    sent = 0
    interval = 1.0 / rate
    start = time.monotonic()
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((src, 0))
        next_at = start
        while sent < count and time.monotonic() - start < seconds:
            try:
                sock.sendto(data, (dst, port))
                sent += 1
            except OSError:
                pass  # a full queue or a neighbour not yet resolved: the next one goes out
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    return sent


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.traffic", description=__doc__)
    parser.add_argument("--src", required=True, help="source address to bind")
    parser.add_argument("--dst", required=True, help="destination address")
    parser.add_argument("--port", type=int, required=True, help="destination UDP port")
    parser.add_argument("--rate", type=float, default=10.0, help="datagrams per second (default 10)")
    parser.add_argument("--count", type=int, default=100_000, help="stop after this many (default 100000)")
    parser.add_argument("--seconds", type=float, default=600.0, help="stop after this long (default 600)")
    parser.add_argument("--payload", type=int, default=64, help="UDP payload bytes (default 64)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.count <= 0 or args.seconds <= 0:
        parser.error("--rate, --count and --seconds must be positive")
    send(
        src=args.src,
        dst=args.dst,
        port=args.port,
        rate=args.rate,
        count=args.count,
        seconds=args.seconds,
        payload=args.payload,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
