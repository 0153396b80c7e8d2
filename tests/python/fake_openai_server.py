"""A stand-in OpenAI-compatible embeddings API for the client scenarios (standard library only).

POST /v1/embeddings answers with deterministic unit vectors (SHA-256 of the text → floats), one
per input, of `dimensions` values (default: the model's real size for OpenAI's models, else 16). No network and no key; `tests/run.sh` starts it
and points vectord's --embed-base-url at it.

Usage: python fake_openai_server.py PORT_FILE   (binds 127.0.0.1:0 and writes the port there)
"""

import hashlib
import json
import math
import struct
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NATIVE = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}


def vector(text, dims):
    out = []
    counter = 0
    while len(out) < dims:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        out.extend(x / 2**31 - 1.0 for x in struct.unpack("<8I", digest))
        counter += 1
    out = out[:dims]
    norm = math.sqrt(sum(x * x for x in out)) or 1.0
    return [x / norm for x in out]


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        if self.path.rstrip("/") != "/v1/embeddings":
            self.send_error(404)
            return
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dims = body.get("dimensions") or NATIVE.get(body["model"], 16)
        data = [{"object": "embedding", "index": i, "embedding": vector(t, dims)} for i, t in enumerate(inputs)]
        out = json.dumps({"object": "list", "model": body["model"], "data": data, "usage": {"prompt_tokens": 0, "total_tokens": 0}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(sys.argv[1], "w") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()
