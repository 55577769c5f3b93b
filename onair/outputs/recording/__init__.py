"""Recording live streams into the video library.

manager.py: the `Recordings` of a node; journal.py: one `Recording` and its crash-safe journal;
writers.py: how each source session (piece) is written; finishing.py: pieces → library files.
"""

from onair.outputs.recording.manager import GRACE_S, Recordings

__all__ = ["GRACE_S", "Recordings"]
