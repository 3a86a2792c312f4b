"""PEERLAB_MAX_STACKS: parsed strictly; at most that many slots held at once, across
open files (as across processes); a slot given back or dropped by its holder's exit
frees a waiter."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from peerlab.scenarios.stack_slots import (
    ENV,
    acquire,
    max_stacks,
    start_turn,
    teardown_mark,
)


def test_the_limit_is_read_strictly():
    assert max_stacks({}) == 0
    assert max_stacks({ENV: " 3 "}) == 3
    assert max_stacks({ENV: "0"}) == 0
    for bad in ("-1", "three", "2.5"):
        with pytest.raises(ValueError, match=ENV):
            max_stacks({ENV: bad})


async def test_a_third_stack_waits_until_one_of_two_is_given_back(tmp_path):
    said: list[str] = []
    first = await acquire(said.append, limit=2, folder=tmp_path)
    second = await acquire(said.append, limit=2, folder=tmp_path)
    third = asyncio.create_task(acquire(said.append, limit=2, folder=tmp_path))
    await asyncio.sleep(0.3)
    assert not third.done()
    assert said == [f"waiting for a stack slot ({ENV}=2 stacks at once)"]
    second.release()
    second.release()  # idempotent
    (await asyncio.wait_for(third, 2)).release()
    assert said[-1].startswith("waited ")
    first.release()


async def test_a_slot_held_by_a_process_that_dies_is_free_again(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import asyncio, sys, pathlib\n"
            "from peerlab.scenarios.stack_slots import acquire\n"
            f"asyncio.run(acquire(print, limit=1, folder=pathlib.Path({str(tmp_path)!r})))\n"
            "print('held', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    waiter = asyncio.create_task(acquire(lambda _: None, limit=1, folder=tmp_path))
    await asyncio.sleep(0.3)
    assert not waiter.done()
    holder.kill()
    holder.wait()
    (await asyncio.wait_for(waiter, 2)).release()


async def test_the_longest_waiter_gets_the_next_slot_then_the_oldest(tmp_path):
    held = await acquire(lambda _: None, limit=1, folder=tmp_path)
    got: list[str] = []

    async def wait(name: str, weight: int) -> None:
        slot = await acquire(lambda _: None, weight, limit=1, folder=tmp_path)
        got.append(name)
        await asyncio.sleep(0.05)
        slot.release()

    light = asyncio.create_task(wait("light, first", 2))
    await asyncio.sleep(0.05)
    older_heavy = asyncio.create_task(wait("heavy, older", 30))
    await asyncio.sleep(0.05)
    heavy = asyncio.create_task(wait("heavy", 30))
    await asyncio.sleep(0.3)
    held.release()
    await asyncio.wait_for(asyncio.gather(light, older_heavy, heavy), 5)
    assert got == ["heavy, older", "heavy", "light, first"]
    assert os.listdir(tmp_path / "queue") == []  # every ticket gone with its waiter


async def test_a_ticket_left_by_a_killed_waiter_does_not_block_the_queue(tmp_path):
    (tmp_path / "queue").mkdir()
    (tmp_path / "queue" / "000000-1-1-0").touch()  # ranks first; nobody holds it
    slot = await asyncio.wait_for(acquire(lambda _: None, 1, limit=1, folder=tmp_path), 2)
    slot.release()
    assert os.listdir(tmp_path / "queue") == []


async def test_stacks_start_one_at_a_time_whatever_the_limit(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    said: list[str] = []
    marks = tmp_path / "teardowns"
    marks.mkdir()
    first = await start_turn(said.append, folder=tmp_path, teardowns=marks)
    second = asyncio.create_task(start_turn(said.append, folder=tmp_path, teardowns=marks))
    await asyncio.sleep(0.3)
    assert not second.done()
    assert said == ["waiting for another stack to finish starting"]
    first.release()
    (await asyncio.wait_for(second, 2)).release()
    assert said[-1].startswith("waited ")


async def test_a_start_waits_for_teardowns_under_way_and_ignores_dead_ones(tmp_path):
    turns, teardowns = tmp_path / "starts", tmp_path / "teardowns"
    turns.mkdir()
    teardowns.mkdir()
    (teardowns / "marks").mkdir()
    (teardowns / "marks" / "left-by-a-killed-run").touch()  # nobody holds it
    said: list[str] = []
    mark = teardown_mark("peerlab-x", teardowns)
    start = asyncio.create_task(start_turn(said.append, folder=turns, teardowns=teardowns))
    await asyncio.sleep(0.3)
    assert not start.done()
    assert said == ["waiting for another stack's teardown"]
    assert not (teardowns / "marks" / "left-by-a-killed-run").exists()
    mark.release()
    mark.release()  # idempotent
    (await asyncio.wait_for(start, 2)).release()
    assert said[-1].startswith("waited ") and os.listdir(teardowns / "marks") == []
