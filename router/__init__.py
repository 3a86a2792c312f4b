"""PeerLab's NAT router for the network lab: `python -m router` (docs/router.md)."""
