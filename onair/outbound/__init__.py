"""Outbound connections the node makes on its own (PULL sources, restream targets): policy, pinning, proxy.

A leaf package: it imports nothing else of onair, so the API, ingest and outputs all use it.
"""

from onair.outbound.gateway import Outbound, Outgoing
from onair.outbound.policy import PULL_SCHEMES, RESTREAM_SCHEMES, Target, TargetRefused, address_refusal, check_target

__all__ = ["PULL_SCHEMES", "RESTREAM_SCHEMES", "Outbound", "Outgoing", "Target", "TargetRefused", "address_refusal",
           "check_target"]
