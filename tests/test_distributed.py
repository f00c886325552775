"""Data-parallel SVI (torch.distributed, gloo on 127.0.0.1) against the one-process fit.

Both fits take the same ClippedAdam steps from the same theta draws; the only difference is
the order in which the per-demonstration log-likelihood gradients are summed (two shards
then all_reduce, vs one sum). That perturbs the gradient at the 1e-15 relative level, which
Adam over 100 steps amplifies to at most ~1e-12 here; 1e-8 is tight enough that any
mis-scaled prior, entropy or likelihood term (a factor of 2 somewhere) would fail.
"""

import pyro
import pytest
import torch
import torch.multiprocessing as mp

from bayes_irl import GridWorld
from bayes_irl.inference import ExactNormalizer, run_svi
from bayes_irl.inference.backends.distributed import run_distributed_svi, run_local, shard
from bayes_irl.models import DemonstrationModel

TOL = 1e-8
OPTIONS = dict(num_steps=100, learning_rate=0.05, num_samples=50, seed=3)


def _problem():
    world = GridWorld.create(size=3, horizon=4, seed=0)
    model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
    data = model.prepare_data(world.sample_demonstrations(41, seed=1))  # odd: unequal shards
    return model, data


def _single_process():
    model, data = _problem()
    # the data-parallel back-end runs SVI from the guide's own start with the fixed schedule:
    # compare it with the same algorithm on one process (run_svi's default starts at Laplace)
    post = run_svi(model, data, progress_bar=False, init="prior", **OPTIONS)
    params = {k: v.detach().clone() for k, v in pyro.get_param_store().items()}
    return post, params


def test_one_process_without_group_matches_run_svi():
    reference, ref_params = _single_process()
    model, data = _problem()
    post = run_distributed_svi(model, data, **OPTIONS)
    assert post.attrs["world_size"] == 1
    for name, value in pyro.get_param_store().items():
        torch.testing.assert_close(value.detach(), ref_params[name], atol=TOL, rtol=0)
    torch.testing.assert_close(post.samples["weights"], reference.samples["weights"],
                               atol=TOL, rtol=0)


def _run_local_retrying_gloo_abort(model, data, attempts=3):
    """run_local, retried when a child is killed by SIGABRT before reporting anything.

    With the first launcher (TCP store, tensors passed through mp.spawn, no barrier before
    teardown) a gloo child aborted with "terminate called without an active exception" in
    about 1 run in 8 on this 2-core VM, with no Python frame on its stack; the current
    launcher (file store, inputs through a file, barrier) had 0 aborts in 12 runs. Such a
    crash of the launcher is not a wrong result, so it is retried; any other failure and
    every assertion below still fail the test.
    """
    for attempt in range(attempts):
        try:
            return run_local(model, data, world_size=2, **OPTIONS)
        except mp.ProcessExitedException as err:
            if err.signal_name != "SIGABRT" or attempt == attempts - 1:
                raise


def test_two_processes_match_single_process():
    reference, ref_params = _single_process()
    model, data = _problem()
    post = _run_local_retrying_gloo_abort(model, data)
    assert post.attrs["world_size"] == 2
    assert set(post.extra["params"]) == set(ref_params)
    for name, value in post.extra["params"].items():
        torch.testing.assert_close(value, ref_params[name], atol=TOL, rtol=0)
    torch.testing.assert_close(post.samples["weights"], reference.samples["weights"],
                               atol=TOL, rtol=0)
    torch.testing.assert_close(torch.as_tensor(post.extra["losses"]),
                               torch.as_tensor(reference.extra["losses"]), atol=1e-6, rtol=0)


def test_shard_validation():
    data = torch.zeros(3, 5, 2, dtype=torch.int64)
    assert shard(data, 1, 2).shape[0] == 1
    with pytest.raises(ValueError, match="at least world_size"):
        shard(data, 0, 4)
    with pytest.raises(ValueError, match="rank must lie"):
        shard(data, 2, 2)
