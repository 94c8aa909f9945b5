"""A stand-in for your API behind nginx: it answers with the identity it got.

Run it on the port nginx proxies /api/ to (deploy/nginx/oauth-tai.conf)::

    python3 deploy/examples/whoami.py 9000

It trusts X-Auth-User and the other identity headers because only nginx
can reach it, on 127.0.0.1, and nginx sets them from the gateway's answer.
Only the Python standard library is used.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

IDENTITY = ("X-Auth-User", "X-Auth-Consumer", "X-Auth-Consumer-Name", "X-Auth-Scope")


class WhoAmI(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        identity = {name: self.headers.get_all(name, []) for name in IDENTITY}
        body = json.dumps({"path": self.path, "identity": identity}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    ThreadingHTTPServer(("127.0.0.1", port), WhoAmI).serve_forever()
