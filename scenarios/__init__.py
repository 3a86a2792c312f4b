"""PeerLab harness: scenario scripts and the tools they use to drive agents."""
