"""SRT ingest: libsrt through ctypes, routed by streamid (see server.py)."""
