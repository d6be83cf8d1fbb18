"""A loopback stand-in for the parts of the Hub's HTTP API that `huggingface_hub`, `datasets` and
`transformers` call: creating model, dataset and Space repositories and branches; commits, with binary files going
the LFS way (preupload answers "lfs", then the LFS batch and upload routes); and downloads at a
revision (repository info, file tree, paths-info, resolve with range requests).

Each repository keeps its commit history, so a test can download at the revision a push produced.
The server is strict where the Hub is: a binary file committed as a regular file, an LFS pointer to an
object never uploaded, or an upload whose content does not match its sha256 is refused, so a client
that skipped the LFS path fails here as it would on the Hub.

The legacy LFS protocol is what it speaks; clients must run with `HF_HUB_DISABLE_XET=1` (the Hub
accepts both, and `huggingface_hub` prefers Xet when `hf_xet` is installed).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

# What a new repository's .gitattributes sends to LFS on the Hub (abridged), and the size above which
# the Hub asks for LFS whatever the name.
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".onnx", ".npz", ".npy", ".parquet",
                ".arrow", ".png", ".jpg", ".jpeg", ".gif", ".webp", ".tif", ".tiff", ".zip", ".gz", ".tar", ".pkl")
LFS_SIZE_LIMIT = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES).encode()
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}


def needs_lfs(path: str, size: int) -> bool:
    return path.lower().endswith(LFS_SUFFIXES) or size > LFS_SIZE_LIMIT


def git_blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class StoredFile:
    content: bytes
    lfs: bool

    @property
    def etag(self) -> str:
        return hashlib.sha256(self.content).hexdigest() if self.lfs else git_blob_id(self.content)


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool = False
    sdk: str | None = None
    commits: dict[str, dict[str, StoredFile]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    variables: dict[str, dict] = field(default_factory=dict)  # a Space's variables (its environment)

    def resolve(self, revision: str) -> str | None:
        """A branch name or a full commit sha -> the commit sha."""
        revision = unquote(revision)
        return self.branches.get(revision) or (revision if revision in self.commits else None)

    def commit(self, branch: str, files: dict[str, StoredFile], message: str) -> str:
        parent = self.branches.get(branch, "")
        sha = hashlib.sha1(f"{parent}\n{message}\n{sorted((p, f.etag) for p, f in files.items())}".encode()
                           ).hexdigest()
        self.commits[sha] = files
        self.branches[branch] = sha
        return sha


class FakeHub:
    def __init__(self, token: str):
        self.token = token
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.validated_yaml: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._lock = threading.Lock()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    def client_env(self, home, token: str | None = None, **extra) -> dict:
        """The environment of a client process that talks to this Hub (and, with the legacy LFS protocol,
        not Xet), with its own cache under `home`."""
        return {**os.environ, "HF_ENDPOINT": self.endpoint, "HF_TOKEN": token or self.token, "HF_HUB_OFFLINE": "0",
                "HF_DATASETS_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1",
                "HF_HOME": str(home), "OMP_NUM_THREADS": "1", **extra}

    # -- for the tests ---------------------------------------------------------------------------------

    def create_repo(self, repo_id: str, repo_type: str = "model", sdk: str | None = None) -> Repo:
        with self._lock:
            key = (repo_type, repo_id)
            if key not in self.repos:
                repo = Repo(repo_type, repo_id, sdk=sdk)
                repo.commit("main", {".gitattributes": StoredFile(GITATTRIBUTES, lfs=False)}, "initial commit")
                self.repos[key] = repo
            return self.repos[key]

    def seed(self, repo_id: str, repo_type: str, files: dict[str, bytes], message: str = "seed") -> str:
        """Commit files straight into a repository (created if needed), LFS where the Hub would put them;
        returns the commit sha. For data the test needs on the Hub but whose upload is not under test."""
        repo = self.create_repo(repo_id, repo_type)
        with self._lock:
            stored = dict(repo.commits[repo.branches["main"]])
            stored.update({path: StoredFile(content, needs_lfs(path, len(content))) for path, content in files.items()})
            return repo.commit("main", stored, message)

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """The files of a repository at a revision, as bytes."""
        repo = self.repos[(repo_type, repo_id)]
        return {path: stored.content for path, stored in repo.commits[repo.resolve(revision)].items()}

    def lfs_paths(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> set[str]:
        """The files of a repository at a revision that were committed as LFS pointers."""
        repo = self.repos[(repo_type, repo_id)]
        return {path for path, stored in repo.commits[repo.resolve(revision)].items() if stored.lfs}

    def head(self, repo_id: str, repo_type: str = "model") -> str:
        return self.repos[(repo_type, repo_id)].branches["main"]


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


_REPO_TYPES = "(?P<type>model|dataset|space)s"
_REPO = r"(?P<repo>[^/]+/[^/]+)"
_API_ROUTES = [
    (re.compile(rf"^/api/{_REPO_TYPES}/{_REPO}/(?P<action>preupload|commit|paths-info|branch)/(?P<rev>[^/]+)$"), "action"),
    (re.compile(rf"^/api/{_REPO_TYPES}/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$"), "tree"),
    (re.compile(rf"^/api/{_REPO_TYPES}/{_REPO}(?:/revision/(?P<rev>[^/]+))?$"), "info"),
]
_SPACE_VARIABLES = re.compile(rf"^/api/spaces/{_REPO}/variables$")
_RESOLVE = re.compile(r"^/(?P<prefix>datasets/|spaces/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_LFS_BATCH = re.compile(r"^/(?P<prefix>datasets/|spaces/)?(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch$")
_LFS_STORAGE = re.compile(r"^/lfs-storage/(?P<oid>[0-9a-f]{64})$")
_PREFIX_TYPES = {None: "model", "datasets/": "dataset", "spaces/": "space"}


def _handler_for(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        # -- plumbing -----------------------------------------------------------------------------------

        def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, body, headers: dict | None = None):
            self._send(status, json.dumps(body).encode(), "application/json", headers)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        def _dispatch(self, route):
            path = urlsplit(self.path).path
            hub.requests.append((self.command, self.path))
            try:
                route(path)
            except HubError as err:
                headers = {"X-Error-Message": err.message, **({"X-Error-Code": err.code} if err.code else {})}
                self._json(err.status, {"error": err.message, **err.extra}, headers)

        def _authorised(self):
            if self.headers.get("Authorization") != f"Bearer {hub.token}":
                raise HubError(401, "Invalid credentials in Authorization header")

        def _repo(self, repo_type: str, repo_id: str) -> Repo:
            repo = hub.repos.get((repo_type, repo_id))
            if repo is None:
                raise HubError(404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
            return repo

        def _commit_sha(self, repo: Repo, revision: str) -> str:
            sha = repo.resolve(revision or "main")
            if sha is None:
                raise HubError(404, f"Invalid rev id: {unquote(revision)}", "RevisionNotFound")
            return sha

        # -- verbs --------------------------------------------------------------------------------------

        def do_POST(self):
            self._dispatch(self._post)

        def do_PUT(self):
            self._dispatch(self._put)

        def do_GET(self):
            self._dispatch(self._get)

        def do_HEAD(self):
            self._dispatch(self._get)

        def do_DELETE(self):
            self._dispatch(self._delete)

        def _delete(self, path: str):
            match = _SPACE_VARIABLES.match(path)
            if not match:
                raise HubError(404, f"not emulated: DELETE {path}")
            self._authorised()
            repo = self._repo("space", match["repo"])
            repo.variables.pop(json.loads(self._body())["key"], None)
            return self._json(200, repo.variables)

        def _post(self, path: str):
            body = self._body()
            if path == "/api/validate-yaml":
                hub.validated_yaml.append(json.loads(body)["content"])
                return self._json(200, {"errors": [], "warnings": []})
            if path == "/api/repos/create":
                return self._create(body)
            if match := _SPACE_VARIABLES.match(path):
                self._authorised()
                repo, request = self._repo("space", match["repo"]), json.loads(body)
                repo.variables[request["key"]] = {"value": request["value"],
                                                  "description": request.get("description")}
                return self._json(200, repo.variables)
            if match := _LFS_BATCH.match(path):
                return self._lfs_batch(self._repo(_PREFIX_TYPES[match["prefix"]], match["repo"]), body)
            for pattern, kind in _API_ROUTES:
                if (match := pattern.match(path)) and kind == "action":
                    repo = self._repo(match["type"], match["repo"])
                    return {"preupload": self._preupload, "commit": self._commit, "paths-info": self._paths_info,
                            "branch": self._branch}[match["action"]](repo, match["rev"], body)
            raise HubError(404, f"not emulated: POST {path}")

        def _put(self, path: str):
            match = _LFS_STORAGE.match(path)
            if not match:
                raise HubError(404, f"not emulated: PUT {path}")
            content = self._body()
            if hashlib.sha256(content).hexdigest() != match["oid"]:
                raise HubError(400, "LFS upload does not match its oid")
            hub.lfs_objects[match["oid"]] = content
            self._send(200, b"", "text/plain")

        def _get(self, path: str):
            if match := _SPACE_VARIABLES.match(path):
                self._authorised()
                return self._json(200, self._repo("space", match["repo"]).variables)
            if match := _RESOLVE.match(path):
                return self._resolve(self._repo(_PREFIX_TYPES[match["prefix"]], match["repo"]), match["rev"],
                                     unquote(match["path"]))
            for pattern, kind in _API_ROUTES:
                if (match := pattern.match(path)) and kind in ("tree", "info"):
                    repo = self._repo(match["type"], match["repo"])
                    if kind == "tree":
                        return self._tree(repo, match["rev"], unquote(match["path"] or ""))
                    return self._info(repo, match["rev"])
            raise HubError(404, f"not emulated: {self.command} {path}")

        # -- uploads ------------------------------------------------------------------------------------

        def _create(self, body: bytes):
            self._authorised()
            request = json.loads(body)
            repo_type = request.get("type") or "model"
            repo_id = f"{request['organization']}/{request['name']}" if request.get("organization") \
                else request["name"]
            if repo_type == "space" and request.get("sdk") not in ("gradio", "streamlit", "docker", "static"):
                raise HubError(400, "A Space needs an sdk: gradio, streamlit, docker or static")
            url = f"{hub.endpoint}/{URL_PREFIXES[repo_type]}{repo_id}"
            if (repo_type, repo_id) in hub.repos:  # the Hub names the repository here too
                raise HubError(409, f"You already created this {repo_type} repo", url=url)
            hub.create_repo(repo_id, repo_type, request.get("sdk"))
            return self._json(200, {"url": url, "name": repo_id, "id": repo_id})

        def _branch(self, repo: Repo, branch: str, body: bytes):
            self._authorised()
            branch = unquote(branch)
            if branch in repo.branches:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            start = (json.loads(body or b"{}") or {}).get("startingPoint") or "main"
            repo.branches[branch] = self._commit_sha(repo, start)
            return self._json(200, {})

        def _preupload(self, repo: Repo, revision: str, body: bytes):
            self._authorised()
            self._commit_sha(repo, revision)
            files = json.loads(body)["files"]
            return self._json(200, {"files": [
                {"path": f["path"], "uploadMode": "lfs" if needs_lfs(f["path"], f["size"]) else "regular",
                 "shouldIgnore": False} for f in files]})

        def _lfs_batch(self, repo: Repo, body: bytes):
            self._authorised()
            request = json.loads(body)
            if request.get("operation") != "upload" or "basic" not in request.get("transfers", ["basic"]):
                raise HubError(400, "only basic LFS uploads are emulated")
            objects = []
            for obj in request["objects"]:
                entry = {"oid": obj["oid"], "size": obj["size"]}
                if obj["oid"] not in hub.lfs_objects:  # already stored: no actions, the client skips it
                    entry["actions"] = {"upload": {"href": f"{hub.endpoint}/lfs-storage/{obj['oid']}"}}
                objects.append(entry)
            return self._json(200, {"transfer": "basic", "objects": objects})

        def _commit(self, repo: Repo, revision: str, body: bytes):
            self._authorised()
            branch = unquote(revision)
            if branch not in repo.branches:
                raise HubError(400, f"Can only commit to a branch, not {branch}")
            files = dict(repo.commits[repo.branches[branch]])
            message = ""
            for line in body.decode().splitlines():
                entry = json.loads(line)
                key, value = entry["key"], entry["value"]
                if key == "header":
                    message = value["summary"]
                elif key == "file":
                    content = base64.b64decode(value["content"])
                    if needs_lfs(value["path"], len(content)) and content:
                        raise HubError(400, f"Your push was rejected because it contains binary files: "
                                            f"{value['path']} must go through LFS")
                    files[value["path"]] = StoredFile(content, lfs=False)
                elif key == "lfsFile":
                    if value["oid"] not in hub.lfs_objects:
                        raise HubError(400, f"LFS object {value['oid']} of {value['path']} was never uploaded")
                    files[value["path"]] = StoredFile(hub.lfs_objects[value["oid"]], lfs=True)
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    files = {p: f for p, f in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
                else:
                    raise HubError(400, f"not emulated: commit operation {key}")
            with hub._lock:
                sha = repo.commit(branch, files, message)
            prefix = URL_PREFIXES[repo.repo_type]
            return self._json(200, {"commitUrl": f"{hub.endpoint}/{prefix}{repo.repo_id}/commit/{sha}",
                                    "commitOid": sha, "pullRequestUrl": None})

        # -- downloads ----------------------------------------------------------------------------------

        def _info(self, repo: Repo, revision: str | None):
            sha = self._commit_sha(repo, revision)
            files = repo.commits[sha]
            info = {"id": repo.repo_id, "sha": sha, "private": repo.private, "disabled": False, "gated": False,
                    "tags": [], "siblings": [{"rfilename": path} for path in sorted(files)]}
            if repo.repo_type == "model":
                info["modelId"] = repo.repo_id
            if repo.repo_type == "space":
                info["sdk"] = repo.sdk
            return self._json(200, info)

        def _entry(self, path: str, stored: StoredFile) -> dict:
            entry = {"type": "file", "path": path, "size": len(stored.content), "oid": git_blob_id(stored.content)}
            if stored.lfs:
                entry["lfs"] = {"oid": stored.etag, "size": len(stored.content), "pointerSize": 134}
            return entry

        def _entries(self, files: dict[str, StoredFile], folder: str, recursive: bool) -> list[dict]:
            prefix = folder.strip("/") + "/" if folder.strip("/") else ""
            entries, folders = [], set()
            for path in sorted(files):
                if not path.startswith(prefix):
                    continue
                rest = path[len(prefix):].split("/")
                if len(rest) == 1:
                    entries.append(self._entry(path, files[path]))
                    continue
                for depth in range(1, len(rest) if recursive else 2):
                    folders.add(prefix + "/".join(rest[:depth]))
                if recursive:
                    entries.append(self._entry(path, files[path]))
            entries += [{"type": "directory", "path": d, "size": 0, "oid": hashlib.sha1(d.encode()).hexdigest()}
                        for d in sorted(folders)]
            return entries

        def _tree(self, repo: Repo, revision: str, folder: str):
            files = repo.commits[self._commit_sha(repo, revision)]
            query = parse_qs(urlsplit(self.path).query)
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            if folder and folder not in files and not any(p.startswith(folder.rstrip("/") + "/") for p in files):
                raise HubError(404, f"Entry not found: {folder}", "EntryNotFound")
            return self._json(200, self._entries(files, folder, recursive))

        def _paths_info(self, repo: Repo, revision: str, body: bytes):
            files = repo.commits[self._commit_sha(repo, revision)]
            asked = parse_qs(body.decode()).get("paths", []) if body else []
            entries = []
            for path in asked:
                path = path.strip("/")
                if path in files:
                    entries.append(self._entry(path, files[path]))
                elif any(p.startswith(path + "/") for p in files):
                    entries.append({"type": "directory", "path": path, "size": 0,
                                    "oid": hashlib.sha1(path.encode()).hexdigest()})
            return self._json(200, entries)

        def _resolve(self, repo: Repo, revision: str, path: str):
            sha = self._commit_sha(repo, revision)
            stored = repo.commits[sha].get(path)
            if stored is None:
                raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
            headers = {"X-Repo-Commit": sha, "ETag": f'"{stored.etag}"', "Accept-Ranges": "bytes"}
            if stored.lfs:
                headers.update({"X-Linked-Etag": f'"{stored.etag}"', "X-Linked-Size": str(len(stored.content))})
            content, status = stored.content, 200
            if (ranged := re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))) and self.command == "GET":
                start = int(ranged[1])
                end = int(ranged[2]) if ranged[2] else len(content) - 1
                end = min(end, len(content) - 1)
                headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
                content, status = content[start:end + 1], 206
            self._send(status, content, "application/octet-stream", headers)

    return Handler


# Runs train_hf.py's main once per argument list in one process whose HF_ENDPOINT is the fake Hub, each
# answered as its own process would be (status, error output); not with tests.conftest's run_main, since
# importing the test set-up would turn this process offline.
TRAIN_HF_RUNS = """
import contextlib, io, json, logging, sys
import train_hf
from pneumolens import cli

class CurrentStderr:  # the log goes to whichever stderr a run has
    def write(self, text): sys.stderr.write(text)
    def flush(self): sys.stderr.flush()

logging.basicConfig(stream=CurrentStderr(), level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
answers = []
for argv in json.loads(sys.argv[1]):
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        try:
            cli.run(lambda: train_hf.main(argv))
            status = 0
        except SystemExit as exit:
            status = exit.code
    answers.append([status, errors.getvalue()])
print(json.dumps(answers))
"""


def train_hf_runs(env: dict, *argvs: list) -> list[tuple[int, str]]:
    """(exit status, error output) of each run of TRAIN_HF_RUNS, from the repository root."""
    runs = json.dumps([[str(argument) for argument in argv] for argv in argvs])
    result = subprocess.run([sys.executable, "-c", TRAIN_HF_RUNS, runs], check=False,
                            cwd=Path(__file__).resolve().parent.parent, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return [tuple(answer) for answer in json.loads(result.stdout.strip().splitlines()[-1])]
