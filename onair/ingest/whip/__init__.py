"""WHIP (RFC 9725) ingest: WebRTC publishers (browsers, OBS 30+, aiortc) on `push_url_whip`."""
