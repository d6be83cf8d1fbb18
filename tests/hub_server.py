"""A loopback stand-in for the part of the Hub HTTP API that `huggingface_hub` uses to create a
repository and commit files to it. Files that arrive are kept in memory for the test to inspect."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub:
    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, dict[str, bytes]] = {}
        self.requests: list[tuple[str, str]] = []
        self.validated_yaml: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _reply(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def do_POST(self):
                hub.requests.append(("POST", self.path))
                body = self._body()
                if self.headers.get("Authorization") != f"Bearer {hub.token}":
                    return self._reply(401, {"error": "Invalid credentials"})
                if self.path == "/api/repos/create":
                    request = json.loads(body)
                    repo_id = f"{request['organization']}/{request['name']}" if request.get("organization") \
                        else request["name"]
                    hub.repos.setdefault(repo_id, {})
                    return self._reply(200, {"url": f"{hub.endpoint}/{repo_id}", "name": repo_id})
                if self.path == "/api/validate-yaml":
                    hub.validated_yaml.append(json.loads(body)["content"])
                    return self._reply(200, {"errors": [], "warnings": []})
                parts = self.path.split("/")
                # /api/models/{owner}/{name}/{preupload|commit}/{revision}
                if len(parts) >= 7 and parts[1:3] == ["api", "models"]:
                    repo_id, action = f"{parts[3]}/{parts[4]}", parts[5]
                    if repo_id not in hub.repos:
                        return self._reply(404, {"error": "Repository not found"})
                    if action == "preupload":
                        files = json.loads(body)["files"]
                        return self._reply(200, {"files": [
                            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
                    if action == "commit":
                        for line in body.decode().splitlines():
                            entry = json.loads(line)
                            if entry["key"] == "file":
                                value = entry["value"]
                                hub.repos[repo_id][value["path"]] = base64.b64decode(value["content"])
                        return self._reply(200, {"commitUrl": f"{hub.endpoint}/{repo_id}/commit/1",
                                                 "commitOid": "1" * 40, "pullRequestUrl": None})
                return self._reply(404, {"error": f"not emulated: POST {self.path}"})

            def do_GET(self):
                hub.requests.append(("GET", self.path))
                return self._reply(404, {"error": f"not emulated: GET {self.path}"})

        return Handler
