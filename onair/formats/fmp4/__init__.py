"""Sans-IO incremental ISO-BMFF (fragmented MP4) reader and parsers.

Only what the CMAF packager needs: top-level box framing (:mod:`.boxes`), init segment
(ftyp+moov) track description (:mod:`.init_segment`) and per-fragment (moof) timing/sync info
plus the tfdt rewrite (:mod:`.fragment`). Every malformed input raises :class:`FMP4Error` and
nothing else.
"""

from onair.formats.fmp4.boxes import MAX_BOX_SIZE, Box, BoxReader, FMP4Error, iter_boxes
from onair.formats.fmp4.fragment import FragmentInfo, parse_fragment, shift_tfdt
from onair.formats.fmp4.init_segment import TrackInfo, parse_init

__all__ = [
    "MAX_BOX_SIZE",
    "Box",
    "BoxReader",
    "FMP4Error",
    "FragmentInfo",
    "TrackInfo",
    "iter_boxes",
    "parse_fragment",
    "parse_init",
    "shift_tfdt",
]
