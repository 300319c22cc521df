"""A TCP front: listens on a port and forwards every connection's bytes, both ways, to another address.

``python -m mlops_dev.tcp_front --listen 127.0.0.1:9000 --to 127.0.0.1:9001``

The production stack's S3 endpoint is this front, with moto behind it (:mod:`mlops_dev.production`):
stopping the front is, to every client, the S3 server gone (its connections cut, new ones refused),
while moto, which keeps its buckets in memory, keeps them. A connection whose upstream cannot be
reached is closed at once, as the server's would be.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import sys
import threading


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


class _Pair:
    """The two sockets of one forwarded connection; closed once both directions have ended."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self.open = 2
        self.lock = threading.Lock()

    def pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)  # the other side's EOF, passed on (half-close)
        except OSError:
            for sock in (self.client, self.upstream):  # a reset on one side ends the other
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        finally:
            with self.lock:
                self.open -= 1
                done = self.open == 0
            if done:
                self.client.close()
                self.upstream.close()


def serve(listen: tuple[str, int], upstream: tuple[str, int], connect_timeout: float = 10.0) -> None:
    listener = socket.create_server(listen, backlog=128)  # SO_REUSEADDR: a restart takes the port again at once
    while True:
        client, _ = listener.accept()
        try:
            server = socket.create_connection(upstream, timeout=connect_timeout)
            server.settimeout(None)
        except OSError:
            client.close()
            continue
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = _Pair(client, server)
        threading.Thread(target=pair.pump, args=(client, server), daemon=True).start()
        threading.Thread(target=pair.pump, args=(server, client), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_dev.tcp_front", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", required=True, help="host:port to accept connections on")
    parser.add_argument("--to", required=True, help="host:port to forward them to")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the sockets close with the process
    print(f"forwarding {args.listen} -> {args.to}", flush=True)
    serve(_address(args.listen), _address(args.to))
    return 0


if __name__ == "__main__":
    sys.exit(main())
