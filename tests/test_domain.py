"""Domain objects: validation of MDPs, trajectories, rewards, the gridworld and .npz I/O."""

import numpy as np
import pyro.distributions as dist
import pytest
import torch

from bayes_irl import GridWorld, LinearReward, MLPReward, TabularMDP, TabularReward, TrajectoryBatch
from bayes_irl.io import load_demonstrations, load_mdp, save_demonstrations, save_mdp
from bayes_irl.rewards import check_identifiable
from tests.helpers import tiny_mdp


def _dense_args():
    p = np.full((2, 2, 2), 0.5)
    return dict(transitions=p, initial=[0.5, 0.5], features=np.eye(2), horizon=2)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(transitions=np.full((2, 2, 3), 1 / 3)), r"transitions must have shape \(S, A, S\)"),
        # found by the hypothesis test of load_mdp: an empty array reached torch's max()
        (dict(transitions=np.zeros((2, 0, 2))), "at least one state and one action"),
        (dict(transitions=np.zeros((0, 2, 0))), "at least one state and one action"),
        (
            dict(transitions=np.array([[[0.5, 0.6], [0.5, 0.5]], [[0.5, 0.5], [0.5, 0.5]]])),
            r"transition rows must sum to 1; row \(s=0, a=0\) sums to 1.1",
        ),
        (
            dict(transitions=np.array([[[1.5, -0.5], [0.5, 0.5]], [[0.5, 0.5], [0.5, 0.5]]])),
            "transitions must be non-negative",
        ),
        (dict(transitions=np.full((2, 2, 2), np.nan)), "transitions must be finite"),
        (dict(initial=[0.2, 0.2]), "initial must be a probability vector"),
        (dict(initial=[1.0]), r"initial must have shape \(2,\)"),
        (dict(features=np.ones((3, 2))), r"features must have shape \(2, K\)"),
        (dict(features=np.array([[np.nan], [1.0]])), "features must be finite"),
        (dict(horizon=0), "horizon must be an int >= 1"),
        (dict(horizon=2.5), "horizon must be an int >= 1"),
    ],
)
def test_mdp_validation_errors(change, match):
    with pytest.raises(ValueError, match=match):
        TabularMDP.from_dense(**{**_dense_args(), **change})


def test_sparse_validation_errors():
    with pytest.raises(ValueError, match=r"successors must lie in \[0, 2\)"):
        TabularMDP.from_sparse(
            successors=[[[0, 5]], [[0, 1]]],
            successor_probs=[[[0.5, 0.5]]] * 2,
            initial=[0.5, 0.5],
            features=np.eye(2),
            horizon=1,
        )
    with pytest.raises(ValueError, match="successor_probs must have the shape of successors"):
        TabularMDP.from_sparse(
            successors=[[[0, 1]], [[0, 1]]],
            successor_probs=[[[1.0]], [[1.0]]],
            initial=[0.5, 0.5],
            features=np.eye(2),
            horizon=1,
        )
    with pytest.raises(ValueError, match=r"action_log_base must have shape \(2, 2\)"):
        TabularMDP.from_dense(**_dense_args(), action_log_base=np.zeros(2))


def test_dense_and_sparse_round_trip():
    mdp = tiny_mdp(seed=1)
    again = TabularMDP.from_sparse(
        successors=mdp.successors,
        successor_probs=mdp.successor_log_probs.exp(),
        initial=mdp.initial,
        features=mdp.features,
        horizon=mdp.horizon,
    )
    assert torch.allclose(again.dense_transitions(), mdp.dense_transitions(), atol=1e-15)


def test_trajectory_validation_errors():
    mdp = tiny_mdp(seed=0, horizon=2)
    good_states, good_actions = [[0, 1, 1]], [[0, 1]]
    with pytest.raises(ValueError, match=r"states must have shape \(n, T \+ 1\)"):
        TrajectoryBatch.create(states=[0, 1], actions=[[0]])
    with pytest.raises(ValueError, match=r"actions must have shape \(n, T\) = \(1, 2\)"):
        TrajectoryBatch.create(states=good_states, actions=[[0, 1, 1]])
    with pytest.raises(ValueError, match="states is empty"):
        TrajectoryBatch.create(states=np.zeros((0, 3), int), actions=np.zeros((0, 2), int))
    with pytest.raises(ValueError, match=r"actions must lie in \[0, 2\); actions\[0, 1\] = 7"):
        TrajectoryBatch.create(states=good_states, actions=[[0, 7]], mdp=mdp)
    with pytest.raises(ValueError, match=r"states must lie in \[0, 3\)"):
        TrajectoryBatch.create(states=[[0, 9, 1]], actions=good_actions, mdp=mdp)
    with pytest.raises(ValueError, match="states must be finite integers"):
        TrajectoryBatch.create(states=[[0.0, np.nan, 1.0]], actions=good_actions)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 2\]"):
        TrajectoryBatch.create(states=good_states, actions=good_actions, lengths=[3])
    with pytest.raises(ValueError, match="horizon is 3"):
        TrajectoryBatch.create(
            states=good_states, actions=good_actions, mdp=tiny_mdp(seed=0, horizon=3)
        )
    # state 0, action 0 never leads to the last state in tiny_mdp (P[0, 0, -1] = 0)
    with pytest.raises(
        ValueError, match="demonstration 0 makes an impossible transition at step 0"
    ):
        TrajectoryBatch.create(states=[[0, 2, 1]], actions=[[0, 0]], mdp=mdp)


def test_trajectory_padding_round_trip():
    batch = TrajectoryBatch.create(
        states=[[0, 1, 2], [1, 1, 9]], actions=[[0, 1], [1, 5]], lengths=[2, 1]
    )
    assert batch.states[1].tolist() == [1, 1, -1] and batch.actions[1].tolist() == [1, -1]
    again = TrajectoryBatch.from_tensor(batch.as_tensor())
    assert torch.equal(again.states, batch.states) and torch.equal(again.lengths, batch.lengths)


def test_reward_models_shapes_and_priors():
    features = torch.randn(6, 3, 2, dtype=torch.float64)
    linear = LinearReward(features)
    assert linear.step_rewards(torch.zeros(4, 5, 2, dtype=torch.float64)).shape == (4, 5, 6, 3)
    tab = TabularReward(6, 3)
    assert tab.step_rewards(torch.zeros(2, 6, dtype=torch.float64)).shape == (2, 6, 3)
    assert TabularReward(6, 3, per_action=True).num_params == 18
    mlp = MLPReward(features, hidden=4)
    assert mlp.num_params == 2 * 4 + 8 and len(mlp.param_names) == mlp.num_params
    assert mlp.step_rewards(torch.zeros(7, mlp.num_params, dtype=torch.float64)).shape == (7, 6, 3)
    with pytest.raises(ValueError, match=r"theta must have shape \(\.\.\., 2\)"):
        linear.step_rewards(torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="prior must be univariate"):
        LinearReward(features, prior=dist.MultivariateNormal(torch.zeros(2), torch.eye(2)))
    with pytest.raises(ValueError, match=r"prior must have batch_shape \(\) or \(2,\)"):
        LinearReward(features, prior=dist.Normal(torch.zeros(3), 1.0))
    with pytest.raises(ValueError, match="features must be finite"):
        LinearReward(torch.full((2, 2, 2), float("nan")))


def test_identifiability_check():
    features = torch.randn(10, 3, dtype=torch.float64)
    assert check_identifiable(features)
    features[:, 2] = 1.0 - features[:, 0] - features[:, 1]  # a constant combination
    assert not check_identifiable(features)


def test_gridworld_construction():
    world = GridWorld.create(size=4, seed=3)
    mdp = world.mdp
    assert (mdp.num_states, mdp.num_actions, mdp.fan_out, mdp.horizon) == (16, 5, 5, 8)
    dense = mdp.dense_transitions()
    assert torch.allclose(dense.sum(-1), torch.ones(16, 5, dtype=torch.float64))
    # corner (0, 0): "up" stays put with probability 1 - slip + 2 * slip / 5 (up, left, stay)
    assert dense[0, 0, 0].item() == pytest.approx(0.9 + 3 * 0.1 / 5)
    designer = GridWorld.create(size=5, features="designer")
    assert designer.mdp.feature_names == ("goal", "hazard", "row", "col")
    with pytest.raises(ValueError, match="slip must lie in"):
        GridWorld.create(size=4, slip=1.0)
    with pytest.raises(ValueError, match="size must be an int >= 2"):
        GridWorld.create(size=1)
    with pytest.raises(ValueError, match="designer features have K = 4"):
        GridWorld.create(size=4, features="designer", num_features=3)


def test_npz_round_trip_and_errors(tmp_path):
    world = GridWorld.create(size=3, horizon=4, seed=1)
    demos = world.sample_demonstrations(5, seed=2)
    mdp_path = save_mdp(tmp_path / "mdp.npz", world.mdp, true_weights=world.true_weights)
    demo_path = save_demonstrations(tmp_path / "demos.npz", demos)
    mdp, weights = load_mdp(mdp_path)
    assert torch.allclose(mdp.dense_transitions(), world.mdp.dense_transitions())
    assert torch.equal(weights, world.true_weights)
    loaded = load_demonstrations(demo_path, mdp=mdp)
    assert torch.equal(loaded.states, demos.states)
    # never overwrite silently; the original file is untouched
    before = mdp_path.read_bytes()
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        save_mdp(mdp_path, world.mdp)
    assert mdp_path.read_bytes() == before
    np.savez(tmp_path / "bad.npz", initial=np.ones(9) / 9, features=np.ones((9, 2)), horizon=4)
    with pytest.raises(ValueError, match="missing key 'transitions'"):
        load_mdp(tmp_path / "bad.npz")
    np.savez(tmp_path / "bad_demos.npz", states=np.zeros((2, 5), int))
    with pytest.raises(ValueError, match="missing key 'actions'"):
        load_demonstrations(tmp_path / "bad_demos.npz")
    with pytest.raises(FileNotFoundError):
        load_mdp(tmp_path / "nope.npz")
