#!/usr/bin/env python3
"""Amplification factor (bytes out / bytes in) of embargo's answers, with and
without the rate limiter: what a spoofed flood in a victim's name would
reflect at the victim.

    benches/amplification.py [EMBARGO_BINARY]     (default target/release/embargo)
    env: LAB (../shared/bench), PORT (15351), UPSTREAM_PORT (15350), N (200)

Starts the lab's upstream (knotd: zone lab.test and a root wildcard) and
embargo on loopback, then for each case sends N queries from one client:

- limiter off: one at a time, each answered; the factor is the answer's
  size over the query's;
- limiter on (5 answers a second, slip 2, loopback not exempt): all N at
  once, as a flood would; the factor is every byte that came back over
  every byte sent;
- refused: a client outside [access] allow (allow = ["10.0.0.0/8"]).

Queries are built by hand, as dig sends them: RD set, with (+edns, 1232
bytes, no cookie) or without (+noedns) an OPT record. Sizes are DNS
payloads (no IP/UDP headers, which add 28 bytes each way).
"""
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = os.environ.get("LAB", os.path.join(REPO, "..", "shared", "bench"))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "target", "release", "embargo")
PORT = int(os.environ.get("PORT", "15351"))
UPORT = int(os.environ.get("UPSTREAM_PORT", "15350"))
N = int(os.environ.get("N", "200"))

CASES = [
    ("blocked", "www.seized-example.com", 1),
    ("cached", "www.lab.test", 1),
    ("ANY (cached)", "lab.test", 255),
    ("TXT 2.2 KB (cached)", "big.lab.test", 16),
]


def query(qid, name, qtype, edns):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 1 if edns else 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", qtype, 1)
    if edns:
        q += b"\0" + struct.pack(">HHIH", 41, 1232, 0, 0)
    return q


def one(sock, q):
    sock.sendto(q, ("127.0.0.1", PORT))
    sock.settimeout(2)
    data, _ = sock.recvfrom(65535)
    return data


def measure(name, qtype, edns, burst):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sent = received = answers = truncated = 0
    if not burst:
        for i in range(N):
            q = query(i, name, qtype, edns)
            r = one(sock, q)
            sent += len(q)
            received += len(r)
            answers += 1
            truncated += (r[2] & 0x02) != 0
    else:
        for i in range(N):
            q = query(i, name, qtype, edns)
            sock.sendto(q, ("127.0.0.1", PORT))
            sent += len(q)
        sock.settimeout(1)
        try:
            while True:
                r, _ = sock.recvfrom(65535)
                received += len(r)
                answers += 1
                truncated += (r[2] & 0x02) != 0
        except socket.timeout:
            pass
    sock.close()
    return sent, received, answers, truncated


def start_embargo(workdir, extra):
    with open(os.path.join(workdir, "list.txt"), "w") as f:
        f.write("seized-example.com\n")
    cfg = os.path.join(workdir, "embargo.toml")
    with open(cfg, "w") as f:
        f.write(f"""[server]
listen = ["127.0.0.1:{PORT}"]
[upstream]
servers = ["127.0.0.1:{UPORT}"]
[block]
ede = "censored"
[[lists]]
name = "lab-list"
source = "list.txt"
authority = "lab"
reason = "lab test list"
{extra}
""")
    p = subprocess.Popen([BIN, "run", "-c", cfg], env=dict(os.environ, RUST_LOG="warn"),
                         stderr=subprocess.DEVNULL)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.9.1", 0))
    for _ in range(100):
        try:
            one(s, query(1, "seized-example.com", 1, False))
            break
        except OSError:
            time.sleep(0.1)
    s.close()
    return p


def main():
    work = tempfile.mkdtemp(prefix="embargo-amp-")
    subprocess.run([os.path.join(LAB, "upstream", "start"), work, str(UPORT)], check=True,
                   stdout=subprocess.DEVNULL)
    rows = []
    try:
        setups = [
            ("off", "", False),
            ("on: 5/s, slip 2", "[rate_limit]\nresponses_per_second = 5\nslip = 2\nexempt = []\n", True),
            ("refused client", '[access]\nallow = ["10.0.0.0/8"]\n', False),
        ]
        for label, extra, burst in setups:
            p = start_embargo(work, extra)
            try:
                if not extra.startswith("[access]"):
                    # Fill the cache, each query from its own /24, so that
                    # the limiter counts none of it against the client below.
                    k = 0
                    for _, name, qtype in CASES:
                        for edns in (False, True):
                            k += 1
                            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                            s.bind((f"127.0.{10 + k}.1", 0))
                            one(s, query(7, name, qtype, edns))
                            s.close()
                for case, name, qtype in CASES:
                    for edns in (False, True):
                        sent, got, answers, tc = measure(name, qtype, edns, burst)
                        rows.append((case, "edns 1232" if edns else "noedns", label, sent // N,
                                     got // max(answers, 1), answers, tc, got / sent))
                        # Let the limiter's credit refill between cases.
                        if burst:
                            time.sleep(16)
            finally:
                p.terminate()
                p.wait()
    finally:
        subprocess.run([os.path.join(LAB, "upstream", "stop"), work], check=False,
                       stdout=subprocess.DEVNULL)
    print(f"N = {N} queries per row, from one client on loopback")
    print("| query | EDNS | limiter | query bytes | answer bytes | answers | TC=1 | bytes out / bytes in |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} | {r[6]} | {r[7]:.2f} |")


if __name__ == "__main__":
    main()
