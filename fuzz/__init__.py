"""Coverage-guided fuzzing of every parser that reads outside bytes (atheris / libFuzzer).

``python -m fuzz --seconds N [target ...]`` runs each target in its own subprocess; see
:mod:`fuzz.targets` for the targets and their invariants and :mod:`fuzz.__main__` for the runner.
Nothing here is imported by the server.
"""
