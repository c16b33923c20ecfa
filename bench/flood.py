#!/usr/bin/env python3
"""A flood from one address, for run.py's `switchboard+flood` target: the first datagram
carries a scanner's User-Agent (`friendly-scanner`), which gets the address blocked at
once by threat detection; then SIP-sized datagrams follow at --rate per second until
SIGTERM. Prints how many it sent. Python 3.11, stdlib only.

    python3 bench/flood.py --source 127.0.0.2 --target 127.0.0.1:5070 --rate 50000
"""

import argparse
import signal
import socket
import sys
import time


def request(source: str, n: int, user_agent: str) -> bytes:
    return (f"REGISTER sip:bench.example SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {source}:5060;branch=z9hG4bK-flood-{n}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:100@bench.example>;tag=f{n}\r\n"
            f"To: <sip:100@bench.example>\r\nCall-ID: flood-{n}@{source}\r\n"
            f"CSeq: {n} REGISTER\r\nContact: <sip:100@{source}:5060>\r\n"
            f"User-Agent: {user_agent}\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n").encode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default="127.0.0.2")
    ap.add_argument("--target", required=True, help="host:port")
    ap.add_argument("--rate", type=int, default=50000, help="datagrams per second")
    args = ap.parse_args()
    host, port = args.target.rsplit(":", 1)
    dst = (host, int(port))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.source, 0))
    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True
    signal.signal(signal.SIGTERM, on_term)
    sock.sendto(request(args.source, 0, "friendly-scanner"), dst)
    time.sleep(0.2)
    packet = request(args.source, 1, "Bench/1.0")
    sent, start = 0, time.monotonic()
    while not stop:
        due = int((time.monotonic() - start) * args.rate)
        while sent < due:
            try:
                sock.sendto(packet, dst)
            except OSError:
                pass  # a full buffer loses a datagram; the flood goes on
            sent += 1
        time.sleep(0.0005)
    elapsed = time.monotonic() - start
    print(f"sent {sent} datagrams in {elapsed:.2f} s ({sent / max(elapsed, 1e-9):.0f}/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
