"""The classroom queue: limits per session, per address and in all, with fake requests (no timing)."""

import asyncio
from types import SimpleNamespace


from pneumolens.fair_queue import QueueLimits, Requester, refusal, requester
from pneumolens.serving.gradio_internals import install_fair_queue as install

LIMITS = QueueLimits(per_session=4, per_address=48, queue_size=64)


def fake_request(address: str = "203.0.113.7", headers: dict | None = None):
    return SimpleNamespace(client=SimpleNamespace(host=address), headers=headers or {})


def students(count: int, address: str = "203.0.113.7") -> list[Requester]:
    return [Requester(f"student-{number}", address) for number in range(count)]


def test_thirty_students_behind_one_address_may_all_wait():
    waiting = students(29)
    assert refusal(Requester("student-29", "203.0.113.7"), waiting, LIMITS) is None


def test_a_flooding_session_is_held_to_its_limit_and_its_classmates_are_not():
    flood = [Requester("flooder", "203.0.113.7")] * 4
    reason = refusal(Requester("flooder", "203.0.113.7"), flood, LIMITS)
    assert reason.startswith("This session already has 4 analyses waiting (at most 4)")
    assert "try again" in reason
    assert refusal(Requester("classmate", "203.0.113.7"), flood, LIMITS) is None


def test_one_address_with_many_sessions_is_bounded_and_other_addresses_are_not():
    waiting = students(48)
    reason = refusal(Requester("student-48", "203.0.113.7"), waiting, LIMITS)
    assert reason.startswith("Your network already has 48 analyses waiting (at most 48 from one address)")
    assert refusal(Requester("elsewhere", "198.51.100.1"), waiting, LIMITS) is None


def test_the_queue_never_holds_more_than_its_size():
    waiting = students(40, "203.0.113.7") + students(24, "198.51.100.1")
    reason = refusal(Requester("late", "192.0.2.9"), waiting, LIMITS)
    assert reason == "The server is busy with 64 waiting analyses; please try again in a minute."


def test_the_session_is_the_tab_or_the_mcp_agent_and_the_address_the_first_forwarded_hop_on_a_space(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    forwarded = {"x-forwarded-for": "203.0.113.7, 10.0.0.1"}
    assert requester(fake_request("127.0.0.1", forwarded), "tab-1") == Requester("tab-1", "127.0.0.1")
    monkeypatch.setenv("SPACE_ID", "example/pneumolens")
    assert requester(fake_request("10.0.0.1", forwarded), "tab-1") == Requester("tab-1", "203.0.113.7")
    # Gradio's MCP layer sends every agent's calls from one client: the agent's own MCP session tells them apart.
    agent = requester(fake_request("127.0.0.1", {"mcp-session-id": "abc", "x-gradio-user": "mcp"}), "shared")
    assert agent.session == "mcp:abc"


class FakeQueue:
    def __init__(self, waiting: list):
        self.event_queue_per_concurrency_id = {"model": SimpleNamespace(queue=waiting)}
        self.pushed = []

    async def push(self, body, request, username):
        self.pushed.append(body.session_hash)
        return True, "event-id", "success"


def waiting_event(session: str, address: str = "203.0.113.7"):
    return SimpleNamespace(session_hash=session, request=fake_request(address))


def test_install_refuses_in_the_apps_words_for_the_page_and_for_programs():
    queue = FakeQueue([waiting_event("flooder") for _ in range(4)])
    install(SimpleNamespace(_queue=queue), LIMITS)
    body = SimpleNamespace(session_hash="flooder")
    ok, detail, state = asyncio.run(queue.push(body, fake_request(), None))
    assert not ok and state == "error" and detail.startswith("This session already has 4")  # the page shows it
    ok, detail, state = asyncio.run(queue.push(body, fake_request(headers={"x-gradio-user": "api"}), None))
    # gradio_client raises a 422 in this form as a ValidationError that carries the message.
    assert not ok and state == "validator_error" and detail[0]["message"].startswith("This session already has 4")
    assert queue.pushed == []
    assert asyncio.run(queue.push(SimpleNamespace(session_hash="classmate"), fake_request(), None))[0]
    assert queue.pushed == ["classmate"]
