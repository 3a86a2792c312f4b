"""The built-in scenarios, one file each, found by scenarios/catalog.py as a user's files
are: Python plan modules (a docstring saying what it proves, `PEERS` (the fewest peers it
needs), optionally `TOPOLOGY` (where each peer sits: docs/stack.md), `ENV` and `BODY_S`
(about how long the body runs here: the longest start first), and `async def run(lab)`)
and YAML scenarios (docs/scenarios.md)."""
