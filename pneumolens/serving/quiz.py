"""The page's read-first mode: the analysis held on the server until the student commits a read, then shown
with one line that compares the two; case sets served once each per session; the session's tally.

Handlers answer plain values by name, as `page.PageHandlers` does; app.py wires them. What the model says is
never sent to the browser before the read: the analysis waits in the session's state (`held`).
"""

from __future__ import annotations

import hashlib
import secrets
import tempfile
from pathlib import Path

import gradio as gr
from PIL import Image

from pneumolens import presentation
from pneumolens.explain import METHODS
from pneumolens.teaching import Case, CaseSet, QuizSession, comparison_sentence, tally_markdown
from pneumolens.serving.page import PageHandlers, displayed_film, no_downloads


class QuizHandlers:
    def __init__(self, page: PageHandlers, cases: CaseSet | None):
        self.page = page
        self.cases = cases
        self.folder = Path(tempfile.mkdtemp(prefix="pneumolens-cases-"))  # served cases, then Gradio's cache

    def analysis(self, file_path, explained_class, opacity, view, window, quiz_on) -> dict:
        """Analyse; in read-first mode hold the answer and show the film large, with the read buttons."""
        answer = self.page.analysis(file_path, explained_class, opacity, view, window)
        if not quiz_on:
            return {**answer, "held": None, **answers_shown(True), "quiz": gr.update(visible=False)}
        film = displayed_film(answer["displayed"], view, window)  # as the page shows it, not decoded again
        return {**self.blank_answer(), "held": {"answer": answer, "file": file_path}, **answers_shown(False),
                "quiz": gr.update(visible=True), "quiz_film": gr.update(value=large_film(film), visible=True),
                "reads": gr.update(visible=True),
                "quiz_result": "", "downloads": no_downloads()}

    def reveal(self, held, session, case, student: str) -> dict:
        """The student's read committed: everything the model said, a line comparing them, the tally."""
        if not held:
            return {"quiz_result": "Press **Analyse** first: the read is compared with the model's answer."}
        answer, record = held["answer"], held["answer"]["record"]
        served = case is not None and case["sha1"] == file_sha1(held["file"])
        if session is None:
            session = QuizSession(seed=0, size=0)
        read = session.record(Case(case["index"], case["label"]) if served else Case(-1, None), student,
                              record["decision"], bool(record.get("refer")))
        tally = session.tally()
        disagreements = [f"Read {number}" for number in tally["disagreements"] if session.reads[number - 1].case >= 0]
        return {**answer, "held": None, "session": session, **answers_shown(True), "quiz": gr.update(visible=True),
                "quiz_film": gr.update(visible=False), "reads": gr.update(visible=False), "quiz_result": comparison_sentence(read),
                "tally": tally_markdown(tally), "tally_box": gr.update(visible=True),
                "again": gr.update(choices=disagreements, value=None, visible=bool(disagreements)),
                "reads_csv": self._csv(session)}

    def switched(self, quiz_on, held) -> dict:
        """The switch: on, the answers wait for the next read; off, the page is as it always was (an answer
        held for a read shows at once)."""
        if quiz_on:
            return {**answers_shown(not held), "quiz": gr.update(visible=bool(held))}
        shown = held["answer"] if held else {}
        return {**shown, "held": None, **answers_shown(True), "quiz": gr.update(visible=False)}

    def uploaded(self, quiz_on) -> dict:
        """A new film: the previous read-first panel goes; in read-first mode the answers wait for Analyse."""
        return {"held": None, **answers_shown(not quiz_on), "quiz": gr.update(visible=False)}

    def next_case(self, session) -> dict:
        """A case this session has not seen, in its seeded order, put in the upload (a neutral file name:
        a case's own name can tell its label)."""
        if self.cases is None:
            return {"quiz_result": "No case set is configured (PNEUMOLENS_CASES)."}
        session = session or QuizSession(seed=secrets.randbits(32), size=len(self.cases))
        if session.finished:
            return {"quiz_result": f"You have read every case of this set ({session.size}). Reload the page for a "
                                   "new order.", "session": session}
        return {**self._served(session.next_case(), len(session.served)), "session": session}

    def see_again(self, session, choice) -> dict:
        """A case where the student and the model differed, put back in the upload."""
        if session is None or not choice:
            return {"upload": gr.skip(), "case": gr.skip()}
        read = session.reads[int(choice.split()[-1]) - 1]
        return self._served(read.case, read.number)

    def _served(self, index: int, number: int) -> dict:
        source = self.cases.image_source(index)
        data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
        path = self.folder / secrets.token_hex(8) / f"case-{number:03d}{self.cases.suffix(index)}"
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        case = {"index": index, "label": self.cases.case(index).label, "sha1": hashlib.sha1(data).hexdigest()}
        return {"upload": str(path), "case": case, "quiz_result": "", "reads": gr.update(visible=False)}

    def blank_answer(self) -> dict:
        """The page's answer cleared, the captions back to what they say before any analysis (once filled,
        they name the explained class)."""
        standings = self.page.service.standings
        return {"decision": "", "warning": "", "record": None, "displayed": None, "large": None, "similar_text": "",
                "similar_gallery": gr.update(value=None, visible=False),
                **{f"map_{method}": None for method in METHODS},
                **{f"caption_{standing.name}": presentation.ranked_caption(standings, standing)
                   for standing in standings}}

    def _csv(self, session: QuizSession) -> str:
        path = self.folder / secrets.token_hex(8) / "pneumolens-reads.csv"
        path.parent.mkdir(parents=True)
        path.write_text(session.csv_text())
        return str(path)


def large_film(image, side: int = 900):
    """The film to read, at least `side` pixels on its longer side: a small case file is enlarged to be read."""
    scale = side / max(image.size)
    return image if scale <= 1 else image.resize((round(image.width * scale), round(image.height * scale)),
                                                 Image.BICUBIC)


def answers_shown(shown: bool) -> dict:
    """Everything the model says on the page, and the accordions that would tell it too."""
    return {"answers": gr.update(visible=shown), "more_answers": gr.update(visible=shown)}


def file_sha1(path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest() if path and Path(path).is_file() else ""

