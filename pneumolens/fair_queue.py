"""A queue that serves a classroom fairly: limits per browser session, per network address and in all.

Gradio's queue has one global size and no per-client limit. Keyed on the address alone, a limit treats a
whole classroom, a hospital network or a university NAT as one client (all of them reach a Space from one
public address); keyed on nothing, one tab that floods fills the queue for everyone. So three limits:

- **per session** (`per_session`): the requests one browser tab or `gradio_client.Client` (its
  `session_hash`), or one MCP agent (its `mcp-session-id`), may have waiting. Running ones do not count.
- **per address** (`per_address`): much higher, so a class of thirty behind one address is served while
  a single host that opens many sessions is still bounded.
- **in all** (`queue_size`): Gradio's own `max_size` too, but counted here first, so that its refusal is in
  the app's words as well.

The refusal names who is limited and when to try again, in the app's words. Gradio answers a push it
refuses with 503 for "queue_full", and both of its clients replace the server's text with their own
("Queue is full! Please try again." in gradio_client's `send_data`, "This application is currently busy"
in the page's JS client), so the app refuses with its own state instead: "error" (HTTP 400) for the page,
whose client shows the server's detail, and "validator_error" (HTTP 422, in the validation format) for
gradio_client and MCP, which raise it as a `ValidationError` carrying the text.

This module is the policy; `pneumolens.serving.gradio_internals` applies it where every queued request
passes before it takes a place (Gradio's `Queue.push`), after checking at start-up that it is there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

PER_SESSION = 4
PER_ADDRESS = 48
QUEUE_SIZE = 64
PROGRAMS = ("api", "mcp")  # x-gradio-user of gradio_client's and Gradio's MCP layer's requests


@dataclass(frozen=True)
class QueueLimits:
    per_session: int = PER_SESSION
    per_address: int = PER_ADDRESS
    queue_size: int = QUEUE_SIZE


@dataclass(frozen=True)
class Requester:
    """Who sent a request: its session and its network address."""
    session: str
    address: str


def requester(request, session_hash: str | None) -> Requester:
    """The session (an MCP agent's own session where the request came through Gradio's MCP layer, which
    sends every agent's calls from one client of its own) and the address (`client_address`)."""
    mcp_session = request.headers.get("mcp-session-id") if request is not None else None
    session = f"mcp:{mcp_session}" if mcp_session else (session_hash or "unknown")
    return Requester(session, client_address(request))


def client_address(request) -> str:
    """The client's address: on a Space, the first X-Forwarded-For hop (set by its proxy); elsewhere
    the peer address, since a forwarded header from anyone else could be forged to dodge the limit."""
    if request is None:
        return "unknown"
    if os.environ.get("SPACE_ID"):
        forwarded = request.headers.get("x-forwarded-for", "")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return request.client.host if request.client else "unknown"


def refusal(new: Requester, waiting: list[Requester], limits: QueueLimits) -> str | None:
    """Why `new` may not wait behind `waiting` (the requests now waiting, running ones not among them), in
    the app's words; None where it may."""
    own = sum(other.session == new.session for other in waiting)
    if own >= limits.per_session:
        return (f"This session already has {own} analyses waiting (at most {limits.per_session}); please wait for "
                "one to finish, then try again.")
    network = sum(other.address == new.address for other in waiting)
    if network >= limits.per_address:
        return (f"Your network already has {network} analyses waiting (at most {limits.per_address} from one "
                "address); please try again in a minute.")
    if len(waiting) >= limits.queue_size:
        return f"The server is busy with {len(waiting)} waiting analyses; please try again in a minute."
    return None
