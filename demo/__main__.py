"""``python -m demo`` (``scripts/demo``): the whole policywatch chain on this machine, explained as it runs."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from demo.stack import DemoStack, StackError
from demo.walkthrough import Walkthrough


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/demo",
        description="Run policywatch end to end on this machine (root; loopback and namespaces it creates), "
        "show what a user sees, then remove everything it made.",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="keep everything running this long after the walkthrough, to browse the URLs (default 60)",
    )
    parser.add_argument("--keep-running", action="store_true", help="keep running until Ctrl-C instead of --duration")
    parser.add_argument(
        "--alert-timeout",
        type=float,
        default=240.0,
        metavar="SECONDS",
        help="how long to wait for each alert to show up before giving up (default 240)",
    )
    args = parser.parse_args(argv)
    if args.duration < 0 or args.alert_timeout <= 0:
        parser.error("--duration must be >= 0 and --alert-timeout > 0")
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("demo: must run as root (it creates network namespaces and loads a BPF program); try: sudo scripts/demo")
        return 1
    # SIGINT too: a shell starts background jobs with SIGINT ignored, and Python then keeps it ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    # Traffic lasts as long as the demo can; the senders stop by themselves if it is killed hard.
    traffic_seconds = 24 * 3600.0 if args.keep_running else args.alert_timeout * 3 + args.duration + 120
    stack = DemoStack(say=print, traffic_seconds=traffic_seconds)
    walk = Walkthrough(stack, alert_timeout=args.alert_timeout)
    code = 0
    print(
        "policywatch demo: everything runs on this machine, on loopback and in namespaces it creates;\n"
        "Ctrl-C stops it at any point and removes all it made.\n"
    )
    try:
        walk.run()
        if args.keep_running:
            print("\nRunning until Ctrl-C.")
            while True:
                time.sleep(3600)
        elif args.duration > 0:
            print(f"\nRunning {args.duration:.0f} s more (Ctrl-C stops earlier); then everything is removed.")
            time.sleep(args.duration)
    except KeyboardInterrupt:
        print("\nInterrupted.")
    except subprocess.CalledProcessError as err:
        detail = (err.stderr or "").strip() if isinstance(err.stderr, str) else ""
        print(f"\ndemo: {' '.join(map(str, err.cmd))} failed ({err.returncode}): {detail}", file=sys.stderr)
        code = 1
    except (StackError, TimeoutError, RuntimeError, OSError) as err:
        print(f"\ndemo: {err}", file=sys.stderr)
        code = 1
    finally:
        print("Cleaning up: processes, namespaces, nft tables, temporary files ...", end=" ", flush=True)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave half of it behind
        try:
            stack.close()
            print("done.")
        except StackError as err:
            print(f"\ndemo: {err}", file=sys.stderr)
            code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
