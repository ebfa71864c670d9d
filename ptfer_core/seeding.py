"""torch's global generator, shared by every thread of the process (the app runs jobs in threads): who draws from it
does so here, under one lock, from a state of its own, and leaves it as it was.

Module initialisation (`nn.Linear`, a transformers model built from its config) and dropout draw from the global
generator and take no generator argument. Seeding it with `torch.manual_seed` in one thread reseeded every other
thread's stream, and two tunings with one seed gave different prompts (their dropout masks came from whatever the
process had drawn before).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager, nullcontext

import torch

GLOBAL_RNG_LOCK = threading.RLock()


@contextmanager
def seeded_global_rng(seed: int):
    """The CPU global generator seeded with `seed` for the block, restored after it."""
    with GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)  # the CPU's only: torch.manual_seed reseeds every GPU too
        yield


class SeededDropout:
    """A tuning's own dropout stream: a generator state seeded by its seed, swapped in for its forward passes and
    out again, under the lock, so that tunings in parallel threads each draw their own masks."""

    def __init__(self, seed: int, device, active: bool = True):
        self.device = torch.device(device)
        self.active = active
        self.cuda = self.device.type == "cuda"
        self.state = (
            torch.Generator().manual_seed(seed).get_state(),
            torch.Generator(device=self.device).manual_seed(seed).get_state() if self.cuda else None,
        )

    def _get(self):
        return torch.get_rng_state(), torch.cuda.get_rng_state(self.device) if self.cuda else None

    def _set(self, state) -> None:
        torch.set_rng_state(state[0])
        if self.cuda:
            torch.cuda.set_rng_state(state[1], self.device)

    def drawn(self):
        """The block's draws come from this stream (nothing to swap when the model has no dropout)."""
        return self._swapped() if self.active else nullcontext()

    @contextmanager
    def _swapped(self):
        with GLOBAL_RNG_LOCK:
            saved = self._get()
            self._set(self.state)
            try:
                yield
            finally:
                self.state = self._get()
                self._set(saved)
