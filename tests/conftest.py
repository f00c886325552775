"""Shared test set-up, after Pyro's tests/conftest.py.

Every test starts from a seeded RNG, an empty param store, distribution validation on,
and one torch thread (on this 2-core machine two threads were measured slower, and
contention with other processes made tiny kernels up to 200x slower).
``BAYES_IRL_TEST_THREADS=2`` runs the suite with two torch threads instead: CI runs the
numerics-sensitive tests a second time that way, with ``NUMBA_DISABLE_JIT=1``, so that no
tolerance rests on one summation order.
"""

import os

import pyro
import pytest
import torch

SMOKE_TEST_ENV = {"SMOKE_TEST": "1"}
TORCH_THREADS = int(os.environ.get("BAYES_IRL_TEST_THREADS", "1"))


def pytest_configure(config):
    torch.set_num_threads(TORCH_THREADS)
    os.environ.setdefault("SMOKE_TEST", "1")


@pytest.fixture(autouse=True)
def _seeded_clean_state():
    threads = torch.get_num_threads()
    torch.set_num_threads(TORCH_THREADS)
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    pyro.enable_validation(True)
    yield
    pyro.clear_param_store()
    torch.set_num_threads(threads)
