"""Bayesian neural (MLP) state reward fitted by SVI with the simulator importance normaliser.

No exact normaliser exists for an MLP state reward, so what is shown is (a) the fit runs
end to end and yields InferenceData with a log_likelihood group, and (b) the posterior-mean
state reward correlates with the true (quadratic) state reward on the states the
demonstrators visited. Only the state reward's shape up to a constant is identified (a
constant step reward cancels in Z), hence correlation rather than equality.
"""

import numpy as np
import pytest
import torch

from bayes_irl.gym_envs import LinearQuadraticVectorEnv
from bayes_irl.inference import fit
from bayes_irl.inference.guide_policy_training import GuidePolicyTrainer
from bayes_irl.inference.normalizers.importance import ImportanceNormalizer
from bayes_irl.inference.normalizers.simulator_proposal import SimulatorProposal
from bayes_irl.linear_quadratic import LinearQuadraticMDP, sample_demonstrations
from bayes_irl.models.demonstrations import DemonstrationModel
from bayes_irl.policies.gaussian import LinearGaussianPolicy
from bayes_irl.rewards.continuous import NeuralStateReward

THETA = torch.tensor([1.0, 0.5, 0.1], dtype=torch.float64)


def test_neural_reward_shapes_and_bound():
    reward = NeuralStateReward(2, 1, control_cost=0.1, hidden=4)
    assert reward.num_params == 2 * 4 + 2 * 4 and len(reward.param_names) == 16
    theta = torch.randn(5, 1, 16, dtype=torch.float64)
    states = torch.randn(7, 11, 2, dtype=torch.float64) * 10
    actions = torch.randn(7, 10, 1, dtype=torch.float64)
    steps = reward.rewards_per_step(theta, states, actions)
    assert steps.shape == (5, 7, 10)
    state_part = steps + 0.5 * 0.1 * actions.squeeze(-1).pow(2)
    bound = theta[..., -4:].abs().sum(-1, keepdim=True)  # |w2 . tanh(.)| <= sum |w2|
    assert torch.all(state_part.abs() <= bound + 1e-12)
    assert reward.returns(theta, states, actions).shape == (5, 7)


def test_neural_reward_fit_end_to_end():
    mdp = LinearQuadraticMDP.default(dx=2, du=1, horizon=10)
    states, actions = sample_demonstrations(
        mdp, THETA, 150, generator=torch.Generator().manual_seed(0)
    )
    # the control cost is known (rho = the true r); the state reward is learned
    reward = NeuralStateReward(2, 1, control_cost=float(THETA[2]), hidden=8)
    policy = LinearGaussianPolicy(horizon=10, state_dim=2, action_dim=1, init_std=3.0)
    normalizer = ImportanceNormalizer(
        SimulatorProposal(LinearQuadraticVectorEnv(mdp, num_envs=256), policy),
        num_samples=512, seed=1, khat_policy="ignore",  # untrained start; k-hat asserted below
    )
    model = DemonstrationModel(reward, normalizer)
    # as before the merge of the trainers: one REINFORCE step per call on 512 rollouts,
    # for 4 draws of theta from the current Pyro guide
    trainer = GuidePolicyTrainer(normalizer, learning_rate=0.05, every=10, num_steps=1,
                                 num_samples=512, theta="sample", num_theta=4,
                                 model=model, data=(states, actions), seed=2)
    posterior = fit(model, (states, actions), method="svi", num_steps=1000, num_samples=500,
                    learning_rate=0.02, progress_bar=False, seed=0, callback=trainer)
    idata = posterior.to_inference_data()
    assert idata.log_likelihood["demonstrations"].shape == (1, 500, 150)
    assert np.all(np.isfinite(idata.log_likelihood["demonstrations"].values))
    assert idata.posterior["mlp_weights"].shape == (1, 500, 32)

    weights = posterior.flat_samples()["mlp_weights"]
    visited = states[:, :-1, :].reshape(-1, 2)  # x_t, t < T, of every demonstration
    with torch.no_grad():
        fitted = reward.state_reward(weights, visited).mean(0)  # posterior-mean reward
    true = -0.5 * (visited.pow(2) * THETA[:2]).sum(-1)
    corr = float(torch.corrcoef(torch.stack([fitted, true]))[0, 1])
    # measured 0.94; 0.8 is a loose bar that still rules out a reward unrelated to the truth
    assert corr > 0.8, corr
    normalizer.log_normalizer(reward, weights.mean(0))
    assert normalizer.diagnostics.khat < 0.7


def test_trainer_rejects_wrong_site():
    mdp = LinearQuadraticMDP.default(dx=2, du=1, horizon=3)
    reward = NeuralStateReward(2, 1, control_cost=0.1, hidden=2)
    normalizer = ImportanceNormalizer(
        SimulatorProposal(
            LinearQuadraticVectorEnv(mdp, num_envs=8),
            LinearGaussianPolicy(horizon=3, state_dim=2, action_dim=1),
        ),
        num_samples=8,
    )
    # the trainer reads theta at the reward's site ("mlp_weights"), not at "theta"
    model = DemonstrationModel(reward, normalizer)
    trainer = GuidePolicyTrainer(normalizer, model=model, theta="sample")
    with pytest.raises(ValueError, match="site 'mlp_weights'"):
        trainer(0, 0.0, lambda: {"theta": torch.zeros(8)})
