"""Checkpoints survive a SIGKILL at any moment: measured by killing a process that writes them.

A child process saves a large checkpoint to the same file over and over through
:func:`tcnvae.checkpoints.save_checkpoint` (``atomic_write``), acknowledging each completed save on
stdout. The test kills it at random moments, several times, and after each kill loads the file: it
must be the last acknowledged checkpoint or the one after it (written, replaced, not yet
acknowledged) — never a torn file. A temporary file left beside the target shows that a kill landed
in the middle of a write, so the test also checks that the kills did hit writes.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tcnvae.checkpoints import load_checkpoint

# 16 Mi float32 values: a 64 MiB checkpoint, so most of the child's time is spent inside a write.
WRITER = """
import sys
import torch
from tcnvae.checkpoints import save_checkpoint

target, iteration = sys.argv[1], int(sys.argv[2])
while True:
    iteration += 1
    save_checkpoint({"iteration": iteration, "weights": torch.full((16 * 1024 * 1024,), float(iteration))}, target)
    print(iteration, flush=True)
"""
KILLS = 5


def _kill_while_writing(target: Path, last: int, rng: random.Random) -> list[int]:
    """Start a writer continuing after ``last``, let it finish two saves, kill it at a random moment;
    return the iterations it acknowledged."""
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(last)],
                              stdout=subprocess.PIPE, text=True)
    try:
        acknowledged = [int(writer.stdout.readline()) for _ in range(2)]  # blocks until two saves are done
        time.sleep(rng.uniform(0.0, 0.3))
    finally:
        writer.send_signal(signal.SIGKILL)
        remaining, _ = writer.communicate(timeout=60)
    assert writer.returncode == -signal.SIGKILL
    return acknowledged + [int(line) for line in remaining.split()]


@pytest.mark.slow
def test_a_killed_writer_leaves_the_old_or_the_new_checkpoint_never_a_torn_one(tmp_path):
    target = tmp_path / "trial_state.pt"
    rng = random.Random(0)
    last = 0
    kills_during_a_write = 0
    for _ in range(KILLS):
        acknowledged = _kill_while_writing(target, last, rng)
        assert acknowledged == list(range(last + 1, acknowledged[-1] + 1))
        last = acknowledged[-1]
        payload = load_checkpoint(target)  # raises on a torn file
        assert payload["iteration"] in (last, last + 1)
        assert torch.equal(payload["weights"], torch.full((16 * 1024 * 1024,), float(payload["iteration"])))
        last = payload["iteration"]
        leftovers = list(tmp_path.glob(f".{target.name}.*.tmp"))
        kills_during_a_write += bool(leftovers)
        for leftover in leftovers:  # a SIGKILL gives atomic_write no chance to remove its temporary file
            leftover.unlink()
    assert kills_during_a_write >= 1, "no kill landed inside a write: the test did not test atomicity"
