"""`peerlab images`: build PeerLab's container images from wherever PeerLab is.

There is one build, scripts/build-images.sh (what `make images` runs); this command finds
it. In a checkout it runs in place. An installed PeerLab carries the script and
everything it sends to Docker as package data (pyproject.toml), but the build writes
next to its inputs (build/, docker/ca-certificates/host-*.crt) and site-packages may be
read-only or shared, so the installed files are first copied to a cache folder of this
user's, one per PeerLab version; build/ there survives, so a rebuild reuses the Go build
of Toxiproxy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

from peerlab.scenarios.stack import PEERLAB_ROOT

BUILD_SCRIPT = Path("scripts") / "build-images.sh"
SHIPPED = ("peer", "signaling", "router", "scenarios", "docker", "scripts")
"""Folders the build reads, besides the files at the top (compose.yaml, requirements.lock)."""


def is_checkout(root: Path) -> bool:
    """A source checkout has its pyproject.toml; an installed copy does not ship it."""
    return (root / "pyproject.toml").is_file()


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "peerlab" / f"images-{metadata.version('peerlab')}"


def build_root(root: Path = PEERLAB_ROOT, cache: Path | None = None) -> Path:
    """Where to run the build: `root` itself in a checkout, else a fresh copy of it."""
    if is_checkout(root):
        return root
    target = cache or cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SHIPPED:
        # Replaced, not merged: a file an older install had must not linger in the build.
        shutil.rmtree(target / name, ignore_errors=True)
        shutil.copytree(root / name, target / name, ignore=ignore)
    for name in ("compose.yaml", "requirements.lock"):
        shutil.copy2(root / name, target / name)
    return target


def add_images_parser(commands: argparse._SubParsersAction) -> None:
    images = commands.add_parser(
        "images",
        help="build the container images (from a checkout or an installed PeerLab)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = images.add_mutually_exclusive_group()
    mode.add_argument("--online", action="store_true", help="pull base images from a registry")
    mode.add_argument(
        "--offline", action="store_true", help="no registry: debootstrap the Debian base"
    )


def run_images(args: argparse.Namespace) -> int:
    root = build_root()
    if root != PEERLAB_ROOT:
        print(f"peerlab images: building from a copy of {PEERLAB_ROOT} in {root}", flush=True)
    command = ["bash", str(root / BUILD_SCRIPT)]
    if args.online:
        command.append("--online")
    if args.offline:
        command.append("--offline")
    return subprocess.run(command, cwd=root).returncode
