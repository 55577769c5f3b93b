from __future__ import annotations

import pytest

from onair.transcode.ladder import (
    DEFAULT_LADDER,
    R360P,
    SYSTEM_LADDERS,
    Rendition,
    plan_ladder,
    renditions_from_qualities,
    transcoded_quality_names,
)


def dims(plan: list[Rendition]) -> list[tuple[str, int, int]]:
    return [(r.name, r.width, r.height) for r in plan]


def test_defaults() -> None:
    assert dims(list(DEFAULT_LADDER)) == [
        ("1080p", 1920, 1080),
        ("720p", 1280, 720),
        ("480p", 854, 480),
        ("360p", 640, 360),
    ]
    assert [r.video_kbps for r in DEFAULT_LADDER] == [4050, 1800, 800, 450]


def test_1080p_source_keeps_all() -> None:
    assert [r.name for r in plan_ladder(DEFAULT_LADDER, 1920, 1080)] == ["1080p", "720p", "480p", "360p"]


def test_720p_source_never_upscales() -> None:
    plan = plan_ladder(DEFAULT_LADDER, 1280, 720)
    assert dims(plan) == [("720p", 1280, 720), ("480p", 854, 480), ("360p", 640, 360)]
    assert transcoded_quality_names(plan) == ["audioa", "360pa", "480pa", "720pa"]


def test_input_order_irrelevant_and_sorted_high_to_low() -> None:
    plan = plan_ladder(list(reversed(DEFAULT_LADDER)), 1280, 720)
    assert [r.name for r in plan] == ["720p", "480p", "360p"]


def test_between_rungs() -> None:
    plan = plan_ladder(DEFAULT_LADDER, 1000, 562)
    assert [r.name for r in plan] == ["480p", "360p"]
    for r in plan:
        assert r.width <= 1000 and r.height <= 562


def test_4_3_source_follows_aspect_and_never_upscales_width() -> None:
    plan = plan_ladder(DEFAULT_LADDER, 960, 720)
    assert dims(plan) == [("720p", 960, 720), ("480p", 640, 480), ("360p", 480, 360)]


def test_vertical_source_swaps_dimensions() -> None:
    plan = plan_ladder(DEFAULT_LADDER, 720, 1280)
    assert dims(plan) == [("720p", 720, 1280), ("480p", 480, 854), ("360p", 360, 640)]
    assert transcoded_quality_names(plan) == ["audioa", "360pa", "480pa", "720pa"]


def test_tiny_source_single_rendition_at_source_size() -> None:
    plan = plan_ladder(DEFAULT_LADDER, 320, 240)
    assert dims(plan) == [("240p", 320, 240)]
    assert plan[0].video_kbps == R360P.video_kbps
    assert transcoded_quality_names(plan) == ["audioa", "240pa"]


def test_tiny_odd_source_even_dimensions() -> None:
    plan = plan_ladder(DEFAULT_LADDER, 321, 179)
    assert dims(plan) == [("178p", 320, 178)]


def test_tiny_vertical_source() -> None:
    assert dims(plan_ladder(DEFAULT_LADDER, 240, 320)) == [("240p", 240, 320)]


def test_slightly_narrow_source_is_clamped_not_snapped_up() -> None:
    plan = plan_ladder(DEFAULT_LADDER, 1278, 720)
    assert plan[0].width == 1278 and plan[0].height == 720


def test_empty_and_invalid() -> None:
    assert plan_ladder([], 1280, 720) == []
    with pytest.raises(ValueError):
        plan_ladder(DEFAULT_LADDER, 0, 720)


def test_custom_ladder_duplicates_names_once() -> None:
    custom = [Rendition("720p", 1280, 720, 2000, 30.0), Rendition("720p", 1280, 720, 1500, 30.0)]
    assert len(plan_ladder(custom, 1920, 1080)) == 1


def test_stored_qualities_round_trip_to_renditions() -> None:
    """The seeded rows convert back to the ladder they were written from, fps cap included."""
    for ladder in SYSTEM_LADDERS:
        rows = ladder.as_row()["qualities"]
        assert renditions_from_qualities(rows) == list(ladder.renditions)
    assert [r.fps_max for r in DEFAULT_LADDER] == [60.0, 60.0, 30.0, 30.0]


def test_seeded_rows_are_stable() -> None:
    # ids, names and keys are what the API serves: they must never change
    from onair.store.catalog import SYSTEM_QUALITY_SETS

    assert [(q["id"], q["kind"], q["default"], [x["id"] for x in q["qualities"]]) for q in SYSTEM_QUALITY_SETS] == [
        (1, "live", True, [1, 2, 3, 4]), (2, "live", False, [2, 3, 4]), (3, "live", False, [3, 4, 5]),
        (4, "vod", True, [11, 12, 13])]
    assert SYSTEM_QUALITY_SETS[2]["qualities"][2] == {
        "id": 5, "name": "240p", "width": 426, "height": 240, "video_kbps": 200}
    assert SYSTEM_QUALITY_SETS[3]["name"] == "VOD ABR 1080p (H.264/AAC)"
