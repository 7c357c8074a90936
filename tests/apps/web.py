"""A small HTTP app for the health tests.

Serves the socket sup hands over as fd 3 (LISTEN_FDS), or PORT.
- GET /health hangs while the file $SICK_FILE exists (a live but stuck app).
- With NOTIFY_SOCKET set, sends READY=1 once the file $READY_FILE exists.
- On SIGTERM, finishes the requests in flight, then exits 0.
"""
import os
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        sick = os.environ.get("SICK_FILE")
        if self.path == "/health" and sick and os.path.exists(sick):
            time.sleep(60)
        body = f"pid {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


def notify_when_ready():
    path, ready = os.environ.get("NOTIFY_SOCKET"), os.environ.get("READY_FILE")
    if not path or not ready:
        return
    while not os.path.exists(ready):
        time.sleep(0.02)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(b"READY=1", path)


def main():
    if os.environ.get("LISTEN_FDS") and int(os.environ.get("LISTEN_PID", "0")) == os.getpid():
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        server.socket = socket.socket(fileno=3)
    else:
        server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.daemon_threads = False
    server.block_on_close = True

    def stop(*_):
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    threading.Thread(target=notify_when_ready, daemon=True).start()
    print(f"serving (pid {os.getpid()})", flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
