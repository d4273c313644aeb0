#!/usr/bin/env python3
"""Checks that a Kafka-protocol broker answers: ApiVersions v0, then Metadata v0.

Usage: kafka_ping.py HOST PORT [EXPECTED_ADVERTISED_HOST:PORT]

Exits 0 when the broker answered both requests without an error and, if given, advertises
EXPECTED_ADVERTISED_HOST:PORT; exits 1 with a one-line reason otherwise. Standard library only,
so that `scripts/stack` needs no Kafka client to know that the broker is ready.
"""

import socket
import struct
import sys

CLIENT_ID = b"ordo-stack"


def request(sock, api_key, api_version, correlation_id, body=b""):
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(CLIENT_ID)) + CLIENT_ID
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", read_exactly(sock, 4))[0]
    response = read_exactly(sock, size)
    got = struct.unpack(">i", response[:4])[0]
    if got != correlation_id:
        raise RuntimeError(f"correlation id {got}, expected {correlation_id}")
    return response[4:]


def read_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise RuntimeError("the broker closed the connection")
        data += chunk
    return data


def read_string(buf, pos):
    length = struct.unpack(">h", buf[pos : pos + 2])[0]
    pos += 2
    if length < 0:
        return None, pos
    return buf[pos : pos + length].decode(), pos + length


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    expected = sys.argv[3] if len(sys.argv) > 3 else None
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.settimeout(5)
        body = request(sock, 18, 0, 1)  # ApiVersions v0
        error = struct.unpack(">h", body[:2])[0]
        if error != 0:
            raise RuntimeError(f"ApiVersions error code {error}")

        body = request(sock, 3, 0, 2, struct.pack(">i", 0))  # Metadata v0, all topics
        pos = 0
        count = struct.unpack(">i", body[pos : pos + 4])[0]
        pos += 4
        brokers = []
        for _ in range(count):
            node_id = struct.unpack(">i", body[pos : pos + 4])[0]
            pos += 4
            broker_host, pos = read_string(body, pos)
            broker_port = struct.unpack(">i", body[pos : pos + 4])[0]
            pos += 4
            brokers.append((node_id, f"{broker_host}:{broker_port}"))
    if not brokers:
        raise RuntimeError("Metadata lists no broker")
    if expected is not None and expected not in [address for _, address in brokers]:
        raise RuntimeError(f"Metadata advertises {brokers}, expected {expected}")
    print(" ".join(f"node {node_id} at {address}" for node_id, address in brokers))


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # noqa: BLE001 - any failure means "not ready"
        print(f"not ready: {error}")
        sys.exit(1)
