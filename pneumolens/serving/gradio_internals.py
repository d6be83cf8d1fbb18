"""Every place where the app reaches into Gradio's internals, why, and a check that they are still there.

Each `Patch` names what it reads or replaces in Gradio (gradio 6.31, as pinned in requirements.txt) and the
upstream problem it works around. `check` runs at start-up, before anything is patched, and fails loudly,
naming each missing internal and the patch that needs it, so that a Gradio upgrade that moves one of them
stops the server at launch instead of silently serving without a limit, a sweep or a guard.

- **fair queue**: Gradio's queue has one global `max_size` and no limit per client (the closest upstream
  request, gradio-app/gradio#1862, asked for a maximum length and got the global `max_size`, #2036).
  `Queue.push`, the one method every queued request passes before it takes a place, is wrapped to apply
  `fair_queue.refusal` (per session, per address, in all).
- **URL inputs**: a file input given a URL is downloaded by the server before any app code runs, with no
  size cap (`max_file_size` caps uploads only; gradio-app/gradio#7825 asked for a per-component cap). The
  endpoints' and the page's file inputs refuse a URL instead, unless it is this server's own link to a file
  already uploaded to it.
- **cache sweep**: Gradio's `delete_cache` task iterates the live sets of cached files while requests add
  to them, dies at the first "Set changed size during iteration" and never deletes again (measured: a
  100-session soak left all 624 MB; no upstream issue found). The app's own lifespan sweeps copies of those
  sets, and the files Gradio's MCP layer writes for data: URIs, which it tracks nowhere.
- **MCP answers of several outputs**: for a queued endpoint without a progress token, Gradio's MCP layer
  wraps gradio_client's whole answer, a tuple, as one output, so an agent gets the tuple's repr instead of
  the record and the images (no upstream issue found). The patch hands on each output.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import gradio.mcp
import gradio.queueing
import gradio.routes
from gradio.blocks import Block

from pneumolens import fair_queue
from pneumolens.serving.uploads import uploaded_file

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Patch:
    name: str
    needs: tuple[str, ...]  # "Owner.attribute", the owner one of `owners(demo)`
    works_around: str


PATCHES = (
    Patch("fair queue", ("Queue.push", "queue.push", "queue.event_queue_per_concurrency_id"),
          "no per-client queue limit (gradio-app/gradio#1862)"),
    Patch("URL inputs", ("Block.move_resource_to_block_cache", "Block.async_move_resource_to_block_cache"),
          "file inputs download URLs without a size cap (gradio-app/gradio#7825)"),
    Patch("cache sweep", ("App.get_blocks", "blocks.delete_cache", "blocks.temp_file_sets", "utils.get_upload_folder"),
          "delete_cache dies on 'Set changed size during iteration'"),
    Patch("MCP answers of several outputs", ("GradioMCPServer._execute_tool_without_progress",),
          "a queued tool of several outputs answers one tuple"),
)


class GradioInternalsMissing(RuntimeError):
    pass


def owners(demo: gr.Blocks) -> dict[str, object]:
    return {"Queue": gradio.queueing.Queue, "Block": Block, "App": gradio.routes.App, "utils": gr.utils,
            "GradioMCPServer": gradio.mcp.GradioMCPServer, "blocks": demo, "queue": getattr(demo, "_queue", None)}


def check(demo: gr.Blocks, patches=PATCHES) -> None:
    """Raise `GradioInternalsMissing`, naming every missing internal and what needs it, if any is gone."""
    found = owners(demo)
    missing = [f"{need} (the {patch.name} patch, for {patch.works_around})" for patch in patches
               for need in patch.needs if not hasattr(found[need.split(".")[0]], need.split(".")[1])]
    if missing:
        raise GradioInternalsMissing(
            f"gradio {gr.__version__} lacks what pneumolens/serving/gradio_internals.py patches: "
            f"{'; '.join(missing)}. Pin the Gradio of requirements.txt, or update the patch.")


def install(demo: gr.Blocks, limits: fair_queue.QueueLimits, file_inputs=()) -> None:
    """Every patch, after `check`; call after `demo.queue(...)`, with the page's components that take files."""
    check(demo)
    install_fair_queue(demo, limits)
    for component in file_inputs:
        refuse_urls(component)
    for function in demo.fns.values():  # the endpoints' inputs (gr.api makes a component of each argument)
        if function.api_visibility == "public":
            for component in function.inputs:
                refuse_urls(component)
    _hand_on_each_mcp_output()


def install_fair_queue(demo: gr.Blocks, limits: fair_queue.QueueLimits) -> None:
    """Make `demo`'s queue refuse a request past any of `limits`, in the app's words."""
    queue = demo._queue
    push = queue.push

    async def fair_push(body, request, username):
        waiting = [fair_queue.requester(event.request, event.session_hash)
                   for events in queue.event_queue_per_concurrency_id.values() for event in events.queue]
        reason = fair_queue.refusal(fair_queue.requester(request, body.session_hash), waiting, limits)
        if reason is None:
            return await push(body, request, username)
        # Gradio answers its own refusal with 503, whose text both of its clients replace with theirs; the
        # page's client shows an "error"'s detail, gradio_client and MCP raise a "validator_error"'s message.
        if request is not None and request.headers.get("x-gradio-user") in fair_queue.PROGRAMS:
            return False, [{"__type__": "validate", "is_valid": False, "message": reason,
                            "parameter_name": "queue"}], "validator_error"
        return False, reason, "error"

    queue.push = fair_push


def refuse_urls(component) -> None:
    """Make `component` refuse a URL, unfetched, unless it links to a file uploaded to this server."""
    move, async_move = component.move_resource_to_block_cache, component.async_move_resource_to_block_cache
    component.move_resource_to_block_cache = lambda url_or_file_path: move(uploaded_file(url_or_file_path))

    async def guarded(url_or_file_path):
        return await async_move(uploaded_file(url_or_file_path))

    component.async_move_resource_to_block_cache = guarded


def _hand_on_each_mcp_output() -> None:
    server = gradio.mcp.GradioMCPServer
    original = server._execute_tool_without_progress
    if getattr(original, "hands_on_each_output", False):
        return

    @functools.wraps(original)
    async def each_output(self, job):
        return outputs_of(await original(self, job))

    each_output.hands_on_each_output = True
    server._execute_tool_without_progress = each_output


def outputs_of(answer) -> list:
    """One item per output from what Gradio's MCP layer answers: gradio 6.31 wraps a queued tool's whole answer,
    a tuple, as one item; a Gradio that fixed this answers the items themselves. Anything else is a shape this
    patch does not know, and says so."""
    if not isinstance(answer, (list, tuple)):
        raise GradioInternalsMissing(f"Gradio's MCP layer answered a {type(answer).__name__}, not a list of outputs: "
                                     "update the 'MCP answers of several outputs' patch.")
    if len(answer) == 1 and isinstance(answer[0], tuple):  # gradio 6.31: the tuple wrapped as one output
        return list(answer[0])
    return list(answer)


# -- the cache sweep ------------------------------------------------------------------------------------------

def delete_old_cache_files(blocks: gr.Blocks, age_s: float) -> int:
    """Delete the files `blocks` put in Gradio's cache more than `age_s` seconds ago; return how many.
    It walks copies of Gradio's sets, so requests can keep adding to them."""
    keep = set().union(*(getattr(block, "keep_in_cache", set()) for block in blocks.blocks.values()))
    now, deleted = time.time(), 0
    for cached in list(blocks.temp_file_sets):
        for file in list(cached):
            if file in keep:
                continue
            try:
                if now - os.lstat(file).st_ctime > age_s:
                    os.remove(file)
                    deleted += 1
                    cached.discard(file)
            except FileNotFoundError:
                cached.discard(file)
    return deleted


def delete_old_data_uri_files(folder: Path, age_s: float) -> int:
    """Gradio's MCP layer writes an image sent as a data: URI to `folder`/<hash>/file.<ext> and tracks it
    nowhere else; it can be a DICOM with patient data, so it goes after `age_s` seconds like an upload."""
    now, deleted = time.time(), 0
    for file in folder.glob("*/file*"):
        try:
            if file.name.split(".")[0] == "file" and now - file.lstat().st_ctime > age_s:
                file.unlink()
                deleted += 1
        except FileNotFoundError:
            pass
    return deleted


@asynccontextmanager
async def cache_cleanup(server_app):
    """A lifespan for the server: every `delete_cache` frequency, both sweeps in a thread."""
    blocks = server_app.get_blocks()
    frequency, age = blocks.delete_cache or (None, None)

    async def clean_periodically():
        while True:
            await asyncio.sleep(frequency)
            try:
                await asyncio.to_thread(delete_old_cache_files, blocks, age)
                await asyncio.to_thread(delete_old_data_uri_files, Path(gr.utils.get_upload_folder()), age)
            except Exception:  # a failed sweep must not end the next ones
                logger.exception("Cache cleanup failed")

    task = asyncio.create_task(clean_periodically()) if frequency and age else None
    try:
        yield
    finally:
        if task:
            task.cancel()
