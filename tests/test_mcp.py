"""The app as an MCP server, called the way an AI agent calls it: `python3 app.py` in its own process and
the `mcp` package's own client over streamable HTTP. The tools are the endpoints gradio_client calls."""

import asyncio
import base64
import io
import json
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.utils import encode_file_path
from PIL import Image

import app
from benchmarks.served_app import ServedApp
from pneumolens.decision import NOT_A_RADIOGRAPH
from pneumolens.explain import METHODS
from pneumolens.serving import gradio_internals
from pneumolens.serving.settings import ServingSettings
from pneumolens.serving.uploads import MAX_FILE_BYTES, RequestError, checked_path, uploaded_file
from tests.test_app import _sample_photo, encoded, explained
from tests.test_images import _png_header_only

pytest.importorskip("mcp", reason="gradio[mcp] is not installed (requirements.txt pins it)")
from mcp import ClientSession  # noqa: E402
from mcp.client.streamable_http import streamablehttp_client  # noqa: E402

pytestmark = [pytest.mark.slow]

MCP_ANSWER_LIMIT = 1024 * 1024  # what one common desktop client accepts for a whole tool answer


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The bundled model, served by `python3 app.py` exactly as a person starts it (MCP on by default)."""
    with ServedApp(tmp_path_factory.mktemp("mcp") / "gradio") as server:
        yield server


def data_uri(data: bytes, mime: str = "image/jpeg") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def jpeg(image: Image.Image) -> bytes:
    return encoded(image.convert("RGB"), "JPEG", quality=90)


@asynccontextmanager
async def mcp_session(url: str):
    async with streamablehttp_client(url + "gradio_api/mcp/") as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


def call(url: str, *calls: tuple[str, dict]):
    """Each (tool, arguments) called in turn in one MCP session; their results, in order."""
    async def run():
        async with mcp_session(url) as session:
            return [await session.call_tool(name, arguments) for name, arguments in calls]
    return asyncio.run(run())


def answer_bytes(result) -> int:
    return sum(len(getattr(item, "data", None) or getattr(item, "text", "")) for item in result.content)


def test_the_tools_an_agent_sees_are_the_intended_ones_and_say_what_they_do(served):
    async def listed():
        async with mcp_session(served.url) as session:
            return (await session.list_tools()).tools

    tools = {tool.name: tool for tool in asyncio.run(listed())}
    # The API's endpoints, one per operation; the page's own events are not tools.
    assert set(tools) == {"predict", "explain", "faithfulness_curves", "robustness", "report"}
    assert "not a chest radiograph" in tools["predict"].description
    assert "faithfulness verdict" in tools["explain"].description and "JPEG" in tools["explain"].description
    schema = tools["explain"].inputSchema["properties"]
    assert "data: URI" in schema["image"]["description"] and "URLs are refused" in schema["image"]["description"]
    assert "predicted class" in schema["explained_class"]["description"]


def assert_same_record(first, second, path: str = "record") -> None:
    """The same JSON record, numbers to 1e-6."""
    if isinstance(first, dict):
        assert set(first) == set(second), path
        for key in first:
            assert_same_record(first[key], second[key], f"{path}.{key}")
    elif isinstance(first, list):
        assert len(first) == len(second), path
        for index, (one, other) in enumerate(zip(first, second)):
            assert_same_record(one, other, f"{path}[{index}]")
    elif isinstance(first, float):
        assert first == pytest.approx(second, abs=1e-6), path
    else:
        assert first == second, path


# What each endpoint is called with: the image, then its other arguments by name.
CALLS = {"predict": {}, "explain": {"explained_class": "predicted class"}, "robustness": {},
         "faithfulness_curves": {"explained_class": "predicted class"},
         "report": {"explained_class": "predicted class", "opacity": 0.6, "robustness": False}}


@pytest.fixture(scope="module")
def tiny_served(tiny_trained_dirs):
    """The tiny DINOv2 model served in this process with its MCP server: the same endpoints as the bundled
    model's, at a fraction of the cost (its faithfulness curves take a second, not seven)."""
    from pneumolens.modeling import ModelSource
    from pneumolens.service import PneumoLensService

    demo = app.build_demo(PneumoLensService(ModelSource(str(tiny_trained_dirs["dinov2"]))))
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **{**app.launch_options(), "mcp_server": True})
    yield url
    demo.close()


def test_every_endpoint_gives_the_same_record_to_gradio_client_and_to_an_agent(tiny_served, tmp_path):
    """One API: the README's client and the MCP tools call the same endpoints, and get the same record (to
    1e-6) for one radiograph, and the same words for a bad input."""
    # A radiograph at 512 px: the robustness check's 26 changes of a full-size film cost seconds of image work.
    example, client = str(tmp_path / "radiograph.jpeg"), Client(tiny_served, verbose=False)
    film = Image.open(app.EXAMPLES[0])
    film.resize((512, round(512 * film.height / film.width))).save(example)
    by_agent = call(tiny_served, *[(name, {"image": data_uri(open(example, "rb").read()), **arguments})
                                  for name, arguments in CALLS.items()])
    for (name, arguments), result in zip(CALLS.items(), by_agent):
        assert not result.isError, (name, result.content)
        answer = client.predict(handle_file(example), *arguments.values(), api_name=f"/{name}")
        by_client = json.loads(answer if isinstance(answer, str) else answer[0])
        assert_same_record(by_client, json.loads(result.content[0].text), name)
        # Each file named in the record comes with it, to both.
        named = [by_client[key] for key in ("maps_image", "figure") if by_client.get(key)]
        named += list((by_client.get("files") or {}).values())
        sent = [] if isinstance(answer, str) else [Path(file).name for file in answer[1:] if file]
        assert sorted(sent) == sorted(named), name
        links = [item.text for item in result.content[1:] if item.type == "text"]
        assert sorted(link.rsplit("/", 1)[-1] for link in links) == sorted(named), name
    not_an_image = data_uri(b"this is a text file, not an image", "text/plain")
    refusals = call(tiny_served, *[(name, {"image": not_an_image, **arguments}) for name, arguments in CALLS.items()])
    for (name, arguments), refused in zip(CALLS.items(), refusals):
        with pytest.raises(Exception) as raised:
            client.predict(encoded_file(b"this is a text file, not an image"), *arguments.values(), api_name=f"/{name}")
        assert refused.isError and str(raised.value) in refused.content[0].text, name
        assert "not an image" in str(raised.value), name


def encoded_file(data: bytes, name: str = "file.txt"):
    """`data` as an upload named as Gradio's MCP layer names a data: URI's file (its message names the file)."""
    import tempfile

    path = Path(tempfile.mkdtemp()) / name
    path.write_bytes(data)
    return handle_file(str(path))


def test_predict_over_mcp_gives_the_decision_and_the_referral(served):
    # The bundled model's referral band holds the last example (P(PNEUMONIA) about 0.99); a slight zoom moves
    # the first (a NORMAL film at 41 %) into it; the third (99.99 %) lies beyond the stability rule's zone.
    for example, reason in ((app.EXAMPLES[0], "moves into the band under 1 of the 1 changes: zoom_centre_80"),
                            (app.EXAMPLES[2], None), (app.EXAMPLES[-1], "inside the band")):
        (result,) = call(served.url, ("predict", {"image": data_uri(open(example, "rb").read())}))
        assert not result.isError, result.content
        answer = json.loads(result.content[0].text)
        assert answer["decision"] in ("NORMAL", "PNEUMONIA")
        assert answer["out_of_distribution"]["flagged"] is False and 0 < answer["threshold"] < 1
        assert answer["refer"] is (reason is not None) and answer["refer_reason"] == reason, example
        assert (answer["stability_check"] is not None) is (example == app.EXAMPLES[0]), example
        assert answer["referral_band"]["lower"] < answer["threshold"] < answer["referral_band"]["upper"]


def test_explain_over_mcp_gives_four_small_maps_and_their_verdicts_for_a_large_radiograph(served):
    radiograph = Image.open(app.EXAMPLES[0])
    large = radiograph.resize((2000, round(2000 * radiograph.height / radiograph.width)))
    (result,) = call(served.url, ("explain", {"image": data_uri(jpeg(large))}))
    assert not result.isError, result.content
    record = json.loads(result.content[0].text)
    images = [item for item in result.content if item.type == "image"]
    assert len(images) == 1 and set(record["maps"]) == set(METHODS)  # every map on one image
    assert {entry["faithfulness"] for entry in record["maps"].values()} == {"passed"}  # the bundled model's
    sheet = Image.open(io.BytesIO(base64.b64decode(images[0].data)))
    assert images[0].mimeType == "image/jpeg"
    for entry in record["maps"].values():
        left, top, right, bottom = entry["box"]
        assert max(right - left, bottom - top) == ServingSettings().api_map_max_side
        assert 0 <= left < right <= sheet.width and 0 <= top < bottom <= sheet.height
    assert answer_bytes(result) < MCP_ANSWER_LIMIT
    assert record["decision"] in ("NORMAL", "PNEUMONIA") and record["explained_class"] == record["decision"]


def test_robustness_over_mcp_says_whether_the_decision_holds_under_each_change(served):
    (result,) = call(served.url, ("robustness", {"image": data_uri(open(app.EXAMPLES[3], "rb").read())}))
    assert not result.isError, result.content
    answer = json.loads(result.content[0].text)
    # The bundled model refers this example (it lies in the referral band): a change that keeps it in the band
    # keeps the answer, one that moves it out decides it; none flips it to NORMAL.
    assert answer["refer"] is True and answer["decision"] == "PNEUMONIA"
    assert answer["changes"] == 26 == len(answer["outcomes"]) and answer["held"] == 26 - len(answer["decided"])
    assert answer["decided"] == [o["name"] for o in answer["outcomes"] if not o["referred"]]
    assert not answer["flipped"] and not answer["referred"]
    assert answer["sentence"].startswith(f"This film is referred to a person (it leans to PNEUMONIA); it stays "
                                         f"referred under {answer['held']} of 26 changes")


def test_a_photo_is_not_a_chest_radiograph_for_an_agent_either(served):
    photo = data_uri(jpeg(Image.fromarray(_sample_photo())))
    predicted, explained = call(served.url, ("predict", {"image": photo}), ("explain", {"image": photo}))
    assert json.loads(predicted.content[0].text)["decision"] == NOT_A_RADIOGRAPH
    record = json.loads(explained.content[0].text)
    assert record["decision"] == NOT_A_RADIOGRAPH and record["out_of_distribution"]["flagged"]


def test_bad_input_is_a_tool_error_with_the_apps_message_and_the_server_keeps_serving(served):
    empty, not_an_image, bomb, url, own_missing, after = call(
        served.url,
        ("explain", {"image": data_uri(b"")}),
        ("predict", {"image": data_uri(b"this is a text file, not an image", "text/plain")}),
        ("explain", {"image": data_uri(_png_header_only(30000, 30000), "image/png")}),
        ("explain", {"image": "https://example.com/xray.jpeg"}),
        # This server's own file route, but no file uploaded to it: a path outside the upload folder.
        ("predict", {"image": served.url + "gradio_api/file=/etc/hostname"}),
        ("predict", {"image": data_uri(open(app.EXAMPLES[1], "rb").read())}),
    )
    refused = "Only uploaded files are accepted: this app does not fetch URLs."
    expected = [(empty, "The file is empty"), (not_an_image, "not an image"), (bomb, "too large"),
                (url, refused), (own_missing, refused)]
    for result, message in expected:
        assert result.isError and message in result.content[0].text, (message, result.content)
        assert not result.content[0].text.startswith("'")  # the message, not its repr
    assert not after.isError and json.loads(after.content[0].text)["decision"] in ("NORMAL", "PNEUMONIA")


def test_a_file_uploaded_to_the_server_is_taken_by_its_link(served):
    """What Gradio's `upload_file_to_gradio` helper does for an agent: upload, then pass the file's link."""
    with open(app.EXAMPLES[2], "rb") as image:
        uploaded = httpx.post(served.url + "gradio_api/upload", files={"files": image}).json()[0]
    link = served.url + "gradio_api/file=" + encode_file_path(uploaded)
    by_link, by_data = call(served.url, ("predict", {"image": link}),
                            ("predict", {"image": data_uri(open(app.EXAMPLES[2], "rb").read())}))
    assert not by_link.isError, by_link.content
    assert json.loads(by_link.content[0].text) == json.loads(by_data.content[0].text)


def test_a_data_uri_over_the_transport_limit_is_refused_before_it_is_decoded(served):
    """The MCP transport takes request bodies of at most 4 MiB: larger files go through the upload route,
    which the app caps at 25 MB."""
    with pytest.raises(Exception) as refused:
        call(served.url, ("explain", {"image": data_uri(b"\xff\xd8" + b"\0" * 5 * 2**20)}))
    assert "413 Request Entity Too Large" in str(refused.getrepr())
    (after,) = call(served.url, ("predict", {"image": data_uri(open(app.EXAMPLES[0], "rb").read())}))
    assert not after.isError


# -- the pieces behind those answers, without a server -------------------------------------------------------

def test_a_file_over_the_cap_is_refused_by_the_app_itself(tmp_path):
    """A data: URI never passes Gradio's upload cap, so the handlers check the size themselves."""
    big = tmp_path / "big.dcm"
    with big.open("wb") as file:
        file.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(RequestError) as refused:
        checked_path(str(big))
    assert str(refused.value) == "The file is too large: 25.0 MB, at most 25 MB are accepted."
    big.write_bytes(b"x")
    assert checked_path(str(big)) == checked_path({"path": str(big)}) == str(big)


def test_only_links_to_files_in_the_upload_folder_are_taken(tmp_path, monkeypatch):
    uploads = tmp_path / "uploads"
    (uploads / "abc").mkdir(parents=True)
    (uploads / "abc" / "x ray.jpeg").write_bytes(b"x")
    (tmp_path / "secret.txt").write_text("no")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    link = f"http://any-host/gradio_api/file={encode_file_path(uploads / 'abc' / 'x ray.jpeg')}"
    assert uploaded_file(link) == str((uploads / "abc" / "x ray.jpeg").resolve())
    assert uploaded_file("/a/local/path") == "/a/local/path"
    for refused in (f"http://any-host/gradio_api/file={uploads}/abc/../../secret.txt",
                    f"http://any-host/gradio_api/file={uploads}/abc/missing.jpeg",
                    "https://example.com/x.jpeg", "ftp://example.com/gradio_api/file=/etc/hostname"):
        with pytest.raises(RequestError, match="does not fetch URLs"):
            uploaded_file(refused)


def test_files_written_for_data_uris_are_deleted_when_old(tmp_path):
    for folder, name in (("h1", "file.jpeg"), ("h2", "file"), ("h3", "patient.dcm")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_bytes(b"x")
    assert gradio_internals.delete_old_data_uri_files(tmp_path, age_s=60) == 0  # all new
    # ctime cannot be set back, so every file counts as old with a negative age
    assert gradio_internals.delete_old_data_uri_files(tmp_path, age_s=-1) == 2
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["patient.dcm"]  # an upload: its own sweep


def test_similar_films_are_the_same_from_the_page_the_api_mcp_and_explain_py(served, tmp_path):
    import explain as explain_cli

    example = app.EXAMPLES[1]
    (result,) = call(served.url, ("explain", {"image": data_uri(open(example, "rb").read())}))
    by_agent = json.loads(result.content[0].text)["similar"]
    by_api = explained(Client(served.url, verbose=False), handle_file(example))[0]["similar"]
    explain_cli.main([example, "--out", str(tmp_path)])
    by_command = json.loads((tmp_path / (Path(example).stem + "_explanation.json")).read_text())["similar"]
    assert by_agent["nearest"] == 20 and len(by_agent["ids"]) == 20
    for other in (by_api, by_command):
        assert other["ids"] == by_agent["ids"] and other["labels"] == by_agent["labels"]
        assert other["counts"] == by_agent["counts"]
        assert other["similarities"] == pytest.approx(by_agent["similarities"], abs=1e-6)


@pytest.fixture(scope="module")
def referring_served(referring_model):
    """The tiny model with a band and a stability rule (`referring_model`), served in this process with MCP."""
    from pneumolens.modeling import ModelSource
    from pneumolens.service import PneumoLensService

    directory, films = referring_model
    service = PneumoLensService(ModelSource(str(directory)))
    demo = app.build_demo(service)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **{**app.launch_options(), "mcp_server": True})
    yield url, service, directory, films
    demo.close()


def test_every_way_in_agrees_on_refer_and_why_for_each_reason_and_a_decided_film(referring_served, tmp_path):
    import csv

    import explain as explain_cli
    from pneumolens.decision import INSIDE_BAND
    from tests.test_app import page_for

    url, service, directory, films = referring_served
    client = Client(url, verbose=False)
    for role, film in films.items():
        upload = data_uri(open(film, "rb").read())
        by_agent = call(url, ("predict", {"image": upload}), ("explain", {"image": upload}),
                        ("report", {"image": upload, **CALLS["report"]}), ("robustness", {"image": upload}))
        answers = {f"mcp {name}": json.loads(result.content[0].text)
                   for name, result in zip(("predict", "explain", "report", "robustness"), by_agent)}
        answers["client predict"] = json.loads(client.predict(handle_file(str(film)), api_name="/predict"))
        answers["client explain"] = explained(client, handle_file(str(film)))[0]
        answers["client report"] = json.loads(client.predict(handle_file(str(film)), "predicted class", 0.6, False,
                                                             api_name="/report")[0])
        page = page_for(service).analysis(str(film), "predicted class", 0.6)
        answers["page"] = page["record"]
        explain_cli.main([str(film), "--model_name_or_path", str(directory), "--out", str(tmp_path / role)])
        answers["explain.py"] = json.loads((tmp_path / role / f"{film.stem}_explanation.json").read_text())
        explain_cli.main(["report", str(film), "--model_name_or_path", str(directory), "--out", str(tmp_path / role)])
        (row,) = csv.DictReader(open(tmp_path / role / "summary.csv"))
        answers["explain.py report"] = {"refer": row["refer"] == "True", "refer_reason": row["refer_reason"] or None}
        said = {(answer["refer"], answer["refer_reason"]) for answer in answers.values()}
        assert len(said) == 1, (role, answers)
        refer, reason = said.pop()
        headline = page["decision"].splitlines()[0]
        if role == "decided":
            assert not refer and reason is None and headline.startswith("### Decision:")
            continue
        assert refer and headline.startswith("### Refer: a radiologist should read this film"), role
        if role == "band":
            assert reason == INSIDE_BAND and "lies inside the referral band" in page["decision"]
        else:
            assert reason.startswith("moves into the band under") and "The answer does not hold" in page["decision"]
            assert answers["mcp predict"]["stability_check"]["moved"] == answers["page"]["stability_check"]["moved"]
