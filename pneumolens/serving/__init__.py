"""Serving one model over Gradio: what app.py lays out and wires.

- `api`: the programs' endpoints (gradio_client and MCP alike), each answering its JSON record first;
- `page`: the page's own handlers;
- `uploads`: what is accepted as an image, and the errors a request gets in words;
- `settings`: how maps are drawn and sent;
- `gradio_internals`: every patch of Gradio's internals, checked at start-up.
"""
