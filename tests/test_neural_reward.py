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
from bayes_irl.inference.normalizers.simulator import (
    SimulatorGuideTrainer,
    SimulatorImportanceNormalizer,
)
from bayes_irl.linear_quadratic import LinearQuadraticMDP, sample_demonstrations
from bayes_irl.models.continuous import ContinuousDemonstrationModel, NeuralStateReward
from bayes_irl.policies.gaussian import LinearGaussianPolicy

THETA = torch.tensor([1.0, 0.5, 0.1], dtype=torch.float64)


def test_neural_reward_shapes_and_bound():
    reward = NeuralStateReward(2, 1, control_cost=0.1, hidden=4)
    assert reward.num_params == 2 * 4 + 2 * 4 and len(reward.param_names) == 16
    theta = torch.randn(5, 1, 16, dtype=torch.float64)
    states = torch.randn(7, 11, 2, dtype=torch.float64) * 10
    actions = torch.randn(7, 10, 1, dtype=torch.float64)
    steps = reward.step_rewards(theta, states, actions)
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
    normalizer = SimulatorImportanceNormalizer(
        LinearQuadraticVectorEnv(mdp, num_envs=256), policy, reward, num_samples=512, seed=1
    )
    trainer = SimulatorGuideTrainer(normalizer, learning_rate=0.05, every=10, num_theta=4,
                                 site="mlp_weights", seed=2)
    model = ContinuousDemonstrationModel(reward, normalizer)
    posterior = fit(model, (states, actions), num_steps=1000, num_samples=500,
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
    assert normalizer.diagnose(weights.mean(0)).khat < 0.7


def test_trainer_rejects_wrong_site():
    mdp = LinearQuadraticMDP.default(dx=2, du=1, horizon=3)
    reward = NeuralStateReward(2, 1, control_cost=0.1, hidden=2)
    normalizer = SimulatorImportanceNormalizer(
        LinearQuadraticVectorEnv(mdp, num_envs=8),
        LinearGaussianPolicy(horizon=3, state_dim=2, action_dim=1), reward, num_samples=8,
    )
    trainer = SimulatorGuideTrainer(normalizer, site="theta")
    with pytest.raises(ValueError, match="site 'theta'"):
        trainer(0, 0.0, lambda: {"mlp_weights": torch.zeros(8)})
