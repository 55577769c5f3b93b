"""Cluster mode (ONAIR_REDIS_URL set): the live registry shared through Redis.

Feed leases (one connection per key across nodes), node membership, control events between nodes and the
live figures each node reports of the streams it receives. Only this package imports redis, and only when
a node is configured for a cluster; one node alone never loads it.
"""
