"""The sans-IO parts of WHEP: fMP4 samples → Annex B access units, the joining viewer's GOP, pacing, AAC → Opus."""

from __future__ import annotations

import struct
import subprocess
from typing import cast

import pytest

from onair.delivery.whep.feed import JOIN_BURST_UNITS, Viewer, WhepFeed
from onair.delivery.whep.media import AccessUnit, GopCache, Pacer, TrackDemuxer, VideoUnits, join_units
from onair.formats.fmp4 import FMP4Error
from onair.formats.fmp4.samples import avcc_to_annexb, fragment_samples, parse_avcc
from onair.hub.keys import StreamKey
from onair.hub.live_stream import LiveStream
from onair.hub.publisher import Publisher
from tests.test_fmp4 import _moof, box, ffmpeg_audio, ffmpeg_video, split_boxes


def _units(data: bytes, chunk: int = 3000) -> tuple[TrackDemuxer, list[AccessUnit]]:
    demux, units, convert = TrackDemuxer(), [], VideoUnits()
    for i in range(0, len(data), chunk):
        for timed in demux.feed(data[i:i + chunk]):
            assert demux.track is not None
            units.append(convert.convert(demux.track, timed))
    return demux, units


def test_avcc_to_annexb_and_the_parameter_sets() -> None:
    sps, pps = b"\x67\x42\xc0\x1e\xaa", b"\x68\xce\x3c\x80"
    avcc = bytes([1, 0x42, 0xC0, 0x1E, 0xFF, 0xE1]) + struct.pack(">H", len(sps)) + sps + b"\x01" + \
        struct.pack(">H", len(pps)) + pps
    config = parse_avcc(avcc)
    assert (config.length_size, config.sps, config.pps) == (4, (sps,), (pps,))
    assert config.parameter_sets_annexb() == b"\0\0\0\1" + sps + b"\0\0\0\1" + pps
    sample = struct.pack(">I", 3) + b"\x65\x01\x02" + struct.pack(">I", 2) + b"\x06\x05"
    assert avcc_to_annexb(sample) == b"\0\0\0\1\x65\x01\x02\0\0\0\1\x06\x05"
    with pytest.raises(FMP4Error):
        avcc_to_annexb(struct.pack(">I", 9) + b"\x65")  # a length past the sample
    with pytest.raises(FMP4Error):
        parse_avcc(avcc[:8])


def test_fragment_samples_read_sizes_flags_and_data_offsets() -> None:
    from onair.formats.fmp4 import TrackInfo

    track = TrackInfo(track_id=1, handler="vide", timescale=90000, codec="avc1.42c01e", sample_entry="avc1")
    # trun: data offset, then per sample duration, size, flags
    samples = [(3000, 4, 0), (3000, 2, 0x00010000)]
    body = struct.pack(">I", 2) + struct.pack(">i", 0) + b"".join(struct.pack(">III", *s) for s in samples)
    moof = _moof(0, b"", 0x001 | 0x100 | 0x200 | 0x400, body, tfdt_v1=False)
    offset = len(moof) + 8  # the mdat payload, counted from the moof's first byte
    moof = _moof(0, b"", 0x001 | 0x100 | 0x200 | 0x400,
                 struct.pack(">I", 2) + struct.pack(">i", offset) + body[8:], tfdt_v1=False)
    mdat = box(b"mdat", b"AAAABB")
    got = fragment_samples(moof, mdat, track)
    assert [(s.decode_time, s.duration, s.sync, s.data) for s in got] == [
        (1234, 3000, True, b"AAAA"), (4234, 3000, False, b"BB")]
    with pytest.raises(FMP4Error):
        fragment_samples(moof, box(b"mdat", b"AAA"), track)  # samples past the mdat


def test_real_transcoder_video_becomes_decodable_annexb() -> None:
    data = ffmpeg_video(seconds=4, profile="main", gop=25)  # 25 fps, a keyframe every second
    demux, units = _units(data)
    assert len(units) == 100 and demux.errors == 0
    assert [i for i, u in enumerate(units) if u.keyframe] == [0, 25, 50, 75]
    assert all(b.time - a.time == pytest.approx(0.04) for a, b in zip(units, units[1:], strict=False))
    assert sorted(u.pts for u in units) == [units[0].pts + 3600 * i for i in range(100)]  # B-frames: pts in order
    assert units[0].data.startswith(b"\0\0\0\1\x67")  # SPS in front of the keyframe
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-of", "csv=p=0",
                            "-show_entries", "stream=codec_name,nb_read_frames", "-f", "h264", "-i", "pipe:0"],
                           input=b"".join(u.data for u in units), capture_output=True, check=True, timeout=60)
    assert probe.stdout.decode().strip() == "h264,100"


def test_a_restarted_byte_stream_continues_the_timeline() -> None:
    data = ffmpeg_video(seconds=2, gop=25)
    demux = TrackDemuxer()
    first = demux.feed(data)
    cut = split_boxes(data)
    # a transcoder killed mid-box: the next byte stream starts over with its own init at time 0
    assert demux.feed(cut[-1].data[:100]) == []
    second = demux.feed(data, restarted=True)
    assert len(second) == len(first) == 50
    assert second[0].time == pytest.approx(first[-1].time + first[-1].duration)


def test_garbage_resynchronises_instead_of_raising() -> None:
    demux = TrackDemuxer()
    assert demux.feed(b"\x00\x00\x00\x02junk" * 4) == []
    assert demux.errors == 1
    assert len(demux.feed(ffmpeg_video(seconds=1, gop=25), restarted=True)) == 25


def test_gop_cache_and_join_start_at_the_last_keyframe() -> None:
    gop = GopCache(max_units=5)
    gop.add(AccessUnit(0.0, 0, b"p", False))  # nothing to start from before a keyframe
    assert gop.units() == []
    units = [AccessUnit(i / 25, i * 3600, b"k" if i % 3 == 0 else b"p", i % 3 == 0) for i in range(8)]
    for u in units:
        gop.add(u)
    assert [u.pts for u in gop.units()] == [6 * 3600, 7 * 3600]
    joined = join_units(gop.units())
    assert joined[0].keyframe and joined[-1].pts == 7 * 3600 and joined[0].pts == 7 * 3600 - 1
    for i in range(8, 14):  # no keyframe for longer than the cache holds: nothing stale to join from
        gop.add(AccessUnit(i / 25, i * 3600, b"p", False))
    assert gop.units() == []


def test_pacer_spreads_a_burst_at_media_pace_and_never_sends_early_units_late() -> None:
    pacer = Pacer(decay=0.0)
    # a 0.5 s fragment of 25 fps video arrives at once at t=10.5
    dues = [pacer.due(i * 0.04, 10.5) for i in range(13)]
    assert dues[0] == pytest.approx(10.5) and dues[-1] == pytest.approx(10.98)
    # the next fragment arrives on time: same offset; a late one moves the offset later
    assert pacer.due(0.52, 11.02) == pytest.approx(11.02)
    assert pacer.due(1.04, 11.70) == pytest.approx(11.70)
    decaying = Pacer(decay=0.01)
    decaying.due(0.0, 1.0)
    assert decaying.due(1.0, 1.5) == pytest.approx(1.99)  # early arrivals pull the delay down, bit by bit


def test_aac_becomes_20ms_opus_once() -> None:
    av = pytest.importorskip("av")
    from onair.delivery.whep.opus import OpusTranscoder

    demux = TrackDemuxer()
    samples = demux.feed(ffmpeg_audio(seconds=2))
    assert demux.track is not None and demux.track.decoder_config
    opus = OpusTranscoder()
    packets = [p for s in samples for p in opus.transcode(demux.track.decoder_config, s)]
    assert opus.errors == 0 and 95 <= len(packets) <= 101
    assert all(b.pts - a.pts == 960 for a, b in zip(packets, packets[1:], strict=False))
    decoder = av.CodecContext.create("opus", "r")
    frames = [f for p in packets for f in decoder.decode(av.Packet(p.data))]
    assert sum(f.samples for f in frames) == 960 * len(packets)


def test_continuity_joins_inputs_on_one_rtp_timeline() -> None:
    from onair.delivery.whep.media import Continuity

    timeline, transcoder, source = Continuity(step=3000), object(), object()
    assert [timeline.map(transcoder, p) for p in (900_000, 903_000)] == [900_000, 903_000]
    assert [timeline.map(source, p) for p in (0, 3000)] == [906_000, 909_000]  # a new input continues
    assert timeline.map(source, 1500) == 909_001  # never back in time
    assert timeline.map(transcoder, 990_000) == 912_001


@pytest.mark.parametrize(("args", "passable"), [
    (["-preset", "ultrafast", "-tune", "zerolatency"], True),  # Constrained Baseline, no B-frames
    (["-preset", "veryfast", "-profile:v", "main", "-bf", "2"], False),  # Main with B-frames
    (["-preset", "veryfast", "-profile:v", "high", "-tune", "zerolatency"], False),  # High: not negotiated
])
def test_flv_frames_pass_only_what_webrtc_carries(args: list[str], passable: bool) -> None:
    from onair.delivery.whep.flv_source import FlvFrames

    flv = subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi",
                          "-i", "sine=sample_rate=48000", "-t", "2", "-c:v", "libx264", *args, "-g", "25",
                          "-c:a", "aac", "-f", "flv", "pipe:1"], capture_output=True, check=True, timeout=60).stdout
    frames = FlvFrames()
    video, audio = [], []
    for i in range(0, len(flv), 4000):
        media = frames.feed(flv[i:i + 4000])
        video += media.video
        audio += media.audio
    assert frames.passable is passable
    assert len(video) == 50 and [i for i, u in enumerate(video) if u.keyframe] == [0, 25]
    assert video[0].data.startswith(b"\0\0\0\1\x67") and video[1].pts - video[0].pts == 3600
    assert frames.aac_config and 90 <= len(audio) <= 96


class _Sink:
    async def publisher_data(self, publisher: Publisher, data: bytes) -> None:
        pass

    async def publisher_closed(self, publisher: Publisher, reason: str) -> None:
        pass


async def test_a_viewer_joining_late_in_a_webrtc_gop_waits_for_the_keyframe_it_asks_for() -> None:
    source = Publisher(_Sink(), StreamKey(1, False, "t"), "whip", "mpegts", started=0.0)
    asked: list[int] = []
    source.keyframe_request = lambda: asked.append(1)
    feed = WhepFeed(cast(LiveStream, None))  # frames come from the source: the stream's tracks are not read
    feed.use_source(source)

    def frames(first: int, n: int, keyframe: bool = False) -> None:
        for i in range(first, first + n):
            feed.on_frame("video", b"\x00\x00\x00\x01" + (b"\x65" if keyframe and i == first else b"\x41"),
                          i * 3000, keyframe=keyframe and i == first)

    frames(0, 10, keyframe=True)
    early = Viewer()
    feed.add(early)  # a short GOP: all of it at once, the newest picture at the live edge
    assert early.started and early.video.qsize() == 10 and asked == []
    frames(10, JOIN_BURST_UNITS)
    late = Viewer()
    feed.add(late)
    assert not late.started and late.video.qsize() == 0 and asked == [1]
    frames(10 + JOIN_BURST_UNITS, 3, keyframe=True)  # the keyframe asked for
    assert late.started and late.video.qsize() == 3

    source.keyframe_request = None  # a source that cannot be asked (RTMP): the long GOP after all
    frames(13 + JOIN_BURST_UNITS, JOIN_BURST_UNITS)
    other = Viewer()
    feed.add(other)
    assert other.started and other.video.qsize() == 3 + JOIN_BURST_UNITS and asked == [1]
    await feed.stop()
