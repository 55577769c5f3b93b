"""Property-based API testing with schemathesis against the live server's own `/openapi.json`.

For every documented operation: schema-valid requests (path ids pointing at real entities where the
operation has them) and schema-violating ones. Every response must be a non-5xx and, where the
status code is documented, match the documented response schema. Bounded: a few examples per
operation, derandomized so a failure reproduces.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import API_KEY, OnairServer

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

AUTH = {"Authorization": f"APIKey {API_KEY}"}
# ONAIR_SCHEMATHESIS_EXAMPLES=50 (and a larger ONAIR_SCHEMATHESIS_BUDGET) for a longer exploration
POSITIVE_EXAMPLES = int(os.environ.get("ONAIR_SCHEMATHESIS_EXAMPLES", "5"))
NEGATIVE_EXAMPLES = max(1, POSITIVE_EXAMPLES * 2 // 3)
# a hard stop well above the usual 20-50 s, so a slow machine fails loudly instead of hanging
BUDGET_S = float(os.environ.get("ONAIR_SCHEMATHESIS_BUDGET", "150"))
DERANDOMIZE = "ONAIR_SCHEMATHESIS_EXAMPLES" not in os.environ  # reproducible in `make test`, exploring when scaled


def _entities(server: OnairServer) -> dict[str, dict[str, Any]]:
    """Real ids for path parameters, per path prefix (the same name means different entities)."""
    with server.client() as c:
        stream = c.post("/streaming/streams", json={"name": "schemathesis", "active": True}).json()
        overlay = c.post(f"/streaming/streams/{stream['id']}/overlays",
                         json=[{"url": "https://example.com/o.html", "width": 100, "height": 50}]).json()
        broadcast = c.post("/streaming/broadcasts", json={"broadcast": {"name": "b"}}).json()
        restream = c.post("/streaming/restreams", json={"restream": {"name": "r", "uri": "rtmp://example.com/a/b"}})
        player = c.post("/streaming/players", json={"player": {"name": "p"}}).json()
    ids: dict[str, dict[str, Any]] = {"/streaming/streams/": {"stream_id": stream["id"]}}
    if isinstance(overlay, list) and overlay:
        ids["/streaming/streams/"]["overlay_id"] = overlay[0]["id"]
    for prefix, doc in (("/streaming/broadcasts/", broadcast), ("/streaming/restreams/", restream.json()),
                        ("/streaming/players/", player)):
        if isinstance(doc, dict) and "id" in doc:
            ids[prefix] = {"doc_id": doc["id"]}
    return ids


def _runner(strategy: Any, examples: int, server: OnairServer, label: str, failures: list[str],
            statuses: list[int]) -> Callable[[], None]:
    checks: list[Callable[..., Any]] = [not_a_server_error, response_schema_conformance]

    @settings(max_examples=examples, deadline=None, database=None, derandomize=DERANDOMIZE,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: Any) -> None:
        response = case.call(base_url=server.base_url, headers=AUTH, timeout=30)
        statuses.append(response.status_code)
        try:
            case.validate_response(response, checks=checks, headers=AUTH)
        except Exception as exc:  # noqa: BLE001 - collected: one report for every operation
            failures.append(f"{label} -> {response.status_code}: {str(exc)[:1200]}")

    return run  # type: ignore[no-any-return]


def test_api_conforms_to_its_openapi(server: OnairServer) -> None:
    schema = schemathesis.openapi.from_url(server.base_url + "/openapi.json")
    ids = _entities(server)
    failures: list[str] = []
    statuses: list[int] = []
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40, "the OpenAPI document lost its operations"

    for op in operations:
        names = {p.name for p in op.path_parameters}
        fixed = next((v for prefix, v in ids.items() if op.path.startswith(prefix)), {})
        fixed = {k: v for k, v in fixed.items() if k in names}
        runs: list[tuple[Any, int]] = [(schemathesis.GenerationMode.POSITIVE, POSITIVE_EXAMPLES)]
        if op.method.upper() != "DELETE" and fixed:
            runs.append((schemathesis.GenerationMode.POSITIVE, POSITIVE_EXAMPLES))  # against real entities
        runs.append((schemathesis.GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES))
        for i, (mode, examples) in enumerate(runs):
            if time.monotonic() - started > BUDGET_S:
                pytest.fail(f"schemathesis run exceeded {BUDGET_S}s at {op.label}; failures so far: {failures}")
            strategy = op.as_strategy(mode, path_parameters=fixed if i == 1 else None)

            run = _runner(strategy, examples, server, f"{op.label} [{mode.name}]", failures, statuses)
            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                pass  # e.g. no way to violate the schema of an operation without parameters

    ok = sum(1 for code in statuses if 200 <= code < 300)
    assert ok >= 50, f"only {ok} of {len(statuses)} requests succeeded: the run hardly exercised real entities"
    assert not failures, f"{len(failures)} schemathesis failures:\n\n" + "\n\n".join(failures[:15])
    with server.client() as c:
        assert c.get("/healthz").status_code == 200
