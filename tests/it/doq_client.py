#!/usr/bin/env python3
"""A DNS over QUIC client on aioquic (RFC 9250), after aioquic's own
examples/doq_client.py, for tests/it/encrypted.rs's real-client test.

    doq_client.py HOST PORT CA_FILE SERVER_NAME QNAME

Asks QNAME A on one stream (2-byte length, message ID 0), checks the
certificate against CA_FILE for SERVER_NAME, and prints what dig would:
`status: RCODE` and each A record's address. Exits 1 on any failure.
"""

import asyncio
import ssl
import struct
import sys

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent, StreamDataReceived

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def build_query(name: str) -> bytes:
    header = struct.pack("!HHHHHH", 0, 0x0100, 1, 0, 0, 0)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.strip(".").split("."))
    return header + labels + b"\x00" + struct.pack("!HH", 1, 1)


def skip_name(msg: bytes, at: int) -> int:
    while True:
        n = msg[at]
        if n == 0:
            return at + 1
        if n & 0xC0 == 0xC0:
            return at + 2
        at += 1 + n


def describe(msg: bytes) -> str:
    _, flags, qd, an, _, _ = struct.unpack("!HHHHHH", msg[:12])
    lines = [f"status: {RCODES.get(flags & 0xF, flags & 0xF)}"]
    at = 12
    for _ in range(qd):
        at = skip_name(msg, at) + 4
    for _ in range(an):
        at = skip_name(msg, at)
        rtype, _, _, rdlen = struct.unpack("!HHIH", msg[at : at + 10])
        at += 10
        if rtype == 1 and rdlen == 4:
            lines.append(".".join(str(b) for b in msg[at : at + 4]))
        at += rdlen
    return "\n".join(lines)


class DoqClient(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._waiting = None
        self._buffer = b""

    async def query(self, name: str) -> bytes:
        q = build_query(name)
        stream = self._quic.get_next_available_stream_id()
        self._quic.send_stream_data(stream, struct.pack("!H", len(q)) + q, end_stream=True)
        self._waiting = self._loop.create_future()
        self.transmit()
        return await asyncio.wait_for(self._waiting, timeout=5)

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived) and self._waiting is not None:
            self._buffer += event.data
            if event.end_stream and not self._waiting.done():
                (length,) = struct.unpack("!H", self._buffer[:2])
                self._waiting.set_result(self._buffer[2 : 2 + length])


async def main(host: str, port: int, ca: str, server_name: str, qname: str) -> None:
    config = QuicConfiguration(alpn_protocols=["doq"], is_client=True, server_name=server_name)
    config.verify_mode = ssl.CERT_REQUIRED
    config.load_verify_locations(ca)
    async with connect(host, port, configuration=config, create_protocol=DoqClient) as client:
        answer = await client.query(qname)
        print(describe(answer))


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]))
    except Exception as e:  # noqa: BLE001 - a test tool: say why and fail
        print(f"doq_client: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
