"""Bounded, seeded fuzz campaigns against PeerLab's real input parsers, run by `make fuzz`.

`python -m fuzz` (see fuzz/__main__.py for usage, docs/fuzz.md for what each campaign
checks) mutates valid inputs and throws them at three targets: the data-channel decoder
(fuzz/decoder.py), the signaling server on a real socket (fuzz/signaling.py) and an agent's
control API over real HTTP (fuzz/control.py). Case N of a seed is always the same input, so
every finding is replayed with `--seed S --case N`.
"""
