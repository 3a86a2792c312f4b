"""PeerLab's NAT router for the network lab: `python -m peerlab.router` (docs/router.md)."""
