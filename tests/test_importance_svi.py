"""Importance-normaliser SVI (NumPy loop, fresh bank per step) and the proposals' table draws."""

import warnings

import numpy as np
import pytest
import torch
from helpers import exact_state_marginals, tiny_mdp

from bayes_irl import GridWorld
from bayes_irl.inference import ExactNormalizer, GuidePolicyTrainer, fit, run_svi
from bayes_irl.inference.backends.importance_svi import importance_svi_applies
from bayes_irl.inference.convergence import ConvergenceWarning
from bayes_irl.inference.normalizers.importance import (
    ImportanceNormalizer,
    PolicyProposal,
    TwistedProposal,
)
from bayes_irl.inference.normalizers.smc import SMCNormalizer
from bayes_irl.models import DemonstrationModel


def _random_proposal(cls, mdp, seed):
    proposal = cls(mdp)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        proposal.policy.logits.copy_(torch.randn(proposal.policy.logits.shape, generator=g,
                                                 dtype=proposal.policy.logits.dtype))
        if cls is TwistedProposal:
            proposal.twist.copy_(torch.randn(proposal.twist.shape, generator=g,
                                             dtype=proposal.twist.dtype))
    return proposal


@pytest.mark.parametrize("cls", [TwistedProposal, PolicyProposal])
def test_table_draws_follow_q_and_score_like_log_ratio(cls):
    # A tiny MDP with a zero transition and a non-uniform action base measure; q with
    # random policy logits and twists. The draws' log-ratio must equal log_ratio() of the
    # drawn trajectories (same formula, accumulated from the tables: float rounding only),
    # and the state frequencies at every t must match q's exact marginals: each of the
    # (T + 1) S cells within 5 binomial standard errors (a cell wrongly sampled by as
    # little as 2% of its probability at K = 200000 would fail).
    mdp = tiny_mdp(seed=1, num_states=4, num_actions=3, horizon=4)
    proposal = _random_proposal(cls, mdp, seed=2)
    num = 200_000
    value, log_ratio = proposal.draw(num, generator=torch.Generator().manual_seed(3))
    assert value.shape == (num, mdp.horizon + 1, 2)
    torch.testing.assert_close(log_ratio, proposal.log_ratio(value).detach(), rtol=0, atol=1e-10)
    exact = exact_state_marginals(proposal)
    counts = torch.stack([torch.bincount(value[:, t, 0], minlength=mdp.num_states)
                          for t in range(mdp.horizon + 1)]).to(exact.dtype)
    se = (exact * (1 - exact) / num).sqrt()
    z = (counts / num - exact).abs() / se.clamp(min=1e-12)
    assert float(z.max()) < 5.0, z
    assert bool(((exact == 0) <= (counts == 0)).all())  # never a zero-probability state


def _gridworld_problem(seed):
    world = GridWorld.create(size=3, horizon=4, num_features=3, seed=seed)
    demos = world.sample_demonstrations(50, seed=seed)
    return world, demos


def test_importance_svi_matches_exact_normaliser_svi():
    # The same Gaussian family fitted by the same NumPy loop, once with the exact log Z and
    # once with the importance normaliser (K = 1000, an untrained twisted proposal trained
    # during the fit, a fresh bank per step): what differs is only the bank's error, which
    # the fresh banks turn into gradient noise that the averaged tail removes. Tolerance:
    # 0.2 posterior sd on every mean and 15% on every sd; measured
    # 0.014 sd and sds within 3.1% on this seed (0.014-0.035 sd, sds within 5%, on seeds
    # 3-5).
    world, demos = _gridworld_problem(5)
    exact_model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
    reference = fit(exact_model, demos, method="svi", seed=5, progress_bar=False)
    norm = ImportanceNormalizer(TwistedProposal(world.mdp), num_samples=1000, seed=5)
    model = DemonstrationModel(world.reward_model, norm)
    refreshes = norm.num_refreshes
    # The guard on the proposal fires here and must: its PSIS k-hat at posterior draws
    # reaches 1.28 (0.73-1.70 for K = 1000-4000, seeds 5-6, measured), i.e. log Z is
    # unreliable in parts of the posterior's tail, although the posterior itself matches
    # the exact-normaliser fit (the claim below). The user is told; the test says so.
    with pytest.warns(ConvergenceWarning, match="k-hat reaches"):
        post = fit(model, demos, method="svi", seed=5, progress_bar=False)
    assert post.attrs["convergence_ok"] == 0
    assert post.attrs["svi_backend"] == "gaussian_vi"
    assert post.attrs["potential"] == "importance_fresh_bank"
    assert post.attrs["converged"] == 1
    assert np.isfinite(post.attrs["khat"]) and np.isfinite(post.attrs["mode_shift"])
    offset = ((post.mean() - reference.mean()) / reference.std()).abs().max().item()
    ratio = post.std() / reference.std()
    assert offset < 0.2, offset
    assert bool(((ratio > 0.85) & (ratio < 1.15)).all()), ratio
    # the normaliser ends with a fresh bank from the trained proposal
    assert norm.num_refreshes > refreshes
    assert torch.isfinite(norm.offsets).all()


def test_importance_svi_applies_only_where_it_can():
    world, demos = _gridworld_problem(0)
    norm = ImportanceNormalizer(TwistedProposal(world.mdp), num_samples=64, seed=0)
    model = DemonstrationModel(world.reward_model, norm)
    data = model.prepare_data(demos)
    assert importance_svi_applies(model, data)
    # a truncated demonstration needs the exact likelihood: Pyro's loop
    truncated = data.clone()
    truncated[0, -2:, :] = -1
    assert not importance_svi_applies(model, truncated)
    # a proposal driven by a black-box simulator, and an SMC normaliser: Pyro's loop
    simulated = PolicyProposal(world.mdp, simulator=lambda t, s, a, g: s)
    assert not importance_svi_applies(
        DemonstrationModel(world.reward_model, ImportanceNormalizer(simulated, num_samples=8)),
        data)
    smc = SMCNormalizer(TwistedProposal(world.mdp), num_particles=8)
    assert not importance_svi_applies(DemonstrationModel(world.reward_model, smc), data)
    # the exact normaliser keeps its own potential
    assert not importance_svi_applies(
        DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp)), data)


def test_importance_svi_routing_and_refusals(tmp_path):
    from bayes_irl.inference.checkpoint import SVICheckpoint

    world, demos = _gridworld_problem(0)
    norm = ImportanceNormalizer(TwistedProposal(world.mdp), num_samples=64, seed=0)
    model = DemonstrationModel(world.reward_model, norm)
    data = model.prepare_data(demos)
    with pytest.raises(ValueError, match="checkpoint"):
        run_svi(model, data, num_steps=5, progress_bar=False,
                checkpoint=SVICheckpoint(tmp_path / "ck.pt"))
    # a user's trainer callback keeps Pyro's loop (the former recipe)
    trainer = GuidePolicyTrainer(norm, method="forward_kl", model=model, data=data, every=2,
                                 num_steps=2, num_samples=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an untrained proposal's k-hat warning
        post = run_svi(model, data, num_steps=4, num_samples=5, progress_bar=False,
                       callback=trainer)
    assert post.attrs["svi_backend"] == "pyro"
