"""A plain-Python HTTP app that serves the socket sup holds for it.

    sup start examples/held_socket.py --name py --listen 127.0.0.1:8000 --ready-notify

sup passes the socket as fd 3 (LISTEN_FDS=1, LISTEN_PID=<this pid>). The app
reports readiness with sd_notify and drains on SIGTERM. Without sup it binds
PORT itself, so it also runs on its own.
"""
import os
import signal
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"ok": true}\n' if self.path == "/health" else f"hello from pid {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def held_socket():
    """The first socket passed by systemd's protocol, or None."""
    if int(os.environ.get("LISTEN_PID", "0")) != os.getpid() or int(os.environ.get("LISTEN_FDS", "0")) < 1:
        return None
    return socket.socket(fileno=3)


def notify_ready():
    path = os.environ.get("NOTIFY_SOCKET")
    if path:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"READY=1", path)


def main():
    sock = held_socket()
    if sock is not None:
        server = ThreadingHTTPServer(sock.getsockname(), Handler, bind_and_activate=False)
        server.socket = sock
    else:
        server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8000"))), Handler)
    server.block_on_close = True  # finish requests in flight on shutdown
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    notify_ready()
    print(f"serving on {server.socket.getsockname()} (pid {os.getpid()})", flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
