"""User-facing errors: one exception type whose message names the problem in one line."""


class PneumoLensError(Exception):
    """An error caused by the user's input (a file, a folder, a model id, a flag), not by a bug.

    Command-line scripts print its message on one line and exit with status 2; the app shows it as a
    `gr.Error`. Anything else that escapes is a bug and keeps its traceback.
    """
