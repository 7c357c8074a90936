"""A webhook receiver for the alert tests: records each POST as a JSON line
(arrival in ms since the epoch, path, headers, body) in LOG, and answers as
MODE says: `ok` (204), `fail` (500) or `hang` (reads the request, never
answers).

usage: receiver.py PORT MODE LOG
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, MODE, LOG = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        record = {
            "t": int(time.time() * 1000),
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
        }
        with lock, open(LOG, "a") as f:
            f.write(json.dumps(record) + "\n")
        if MODE == "hang":
            time.sleep(3600)
        self.send_response(204 if MODE == "ok" else 500)
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
