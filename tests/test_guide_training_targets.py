"""The issue's targets with a LEARNED guide policy (stochastic objectives only, no soft backup).

Setting: ``GridWorld.create(size=10, slip=0.1, horizon=20, num_features=4, seed=0)`` at the
true reward, K = 1000 trajectories per bank. Target: |log Z_hat - log Z| <= 0.1 nats and
PSIS k-hat < 0.7 on each of 5 fresh banks, with a twisted proposal trained only by
sampled forward-KL steps (its own Adam optimiser) from the uniform guide; no exact soft
values are used anywhere in the training. The exact recursion gives the reference log Z.
"""


import pytest

from bayes_irl import GridWorld
from bayes_irl.inference import ExactNormalizer
from bayes_irl.inference.guide_policy import GuidePolicyTrainer
from bayes_irl.inference.importance import ImportanceNormalizer, TwistedProposal


@pytest.fixture(scope="module")
def grid10():
    return GridWorld.create(size=10, slip=0.1, horizon=20, num_features=4, seed=0)


def test_forward_kl_twisted_guide_meets_log_z_and_khat_targets(grid10):
    # Recipe: forward KL (self-normalised weights, mass covering) from the uniform
    # twisted proposal, 400 Adam steps at lr 0.1, 256 fresh trajectories per step (~6 s).
    # Measured with this recipe (training seeds 0-3, 5 fresh banks each, 20 banks):
    # |error| <= 0.041 nats, k-hat 0.15-0.55 (ESS 700-900 of 1000). Tolerances are the
    # issue's: 0.1 nats and k-hat 0.7 (Vehtari et al.'s reliability threshold). The
    # untrained (uniform) proposal is far off: error about -98 nats, k-hat ~ 1.
    # For comparison (measured, not asserted): the plain PolicyProposal cannot reach the
    # tilted global maxent distribution with slip 0.1; even its best member (the exact
    # maximum causal entropy policy) has k-hat > 0.7 at K = 1000 (see notebook 02).
    r = grid10.true_step_rewards()
    exact = ExactNormalizer(grid10.mdp).log_normalizer(r).item()
    norm = ImportanceNormalizer(
        grid10.mdp, TwistedProposal(grid10.mdp), num_samples=1000, khat_policy="ignore", seed=100
    )
    untrained = norm.log_normalizer(r).item()
    assert norm.diagnostics.khat > 0.7 and untrained - exact < -10
    trainer = GuidePolicyTrainer(
        norm, method="forward_kl", num_steps=400, num_samples=256, learning_rate=0.1, seed=0
    )
    trainer.train(r)
    for _ in range(5):
        norm.refresh()
        estimate = norm.log_normalizer(r).item()
        assert abs(estimate - exact) <= 0.1
        assert norm.diagnostics.khat < 0.7
