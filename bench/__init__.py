"""Benchmarks of PeerLab's messaging path against raw aiortc, run by `make bench`.

`python -m bench.agent_vs_raw` measures, in one run on loopback with each end in its own
process, the throughput and round trip of a bare aiortc data channel and of two
`peer.agent.Agent`s talking through a real signaling server, and prints their ratios.
"""
