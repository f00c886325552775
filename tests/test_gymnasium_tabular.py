"""TabularMDP.from_gymnasium, ragged episodes, rollouts and Minari datasets."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

from bayes_irl import LinearReward, TabularMDP, TrajectoryBatch
from bayes_irl.episodes import load_minari, rollout_episodes
from bayes_irl.inference import ExactNormalizer
from bayes_irl.models import MaxEntTrajectory
from bayes_irl.soft_bellman import soft_policy

ENVS = [
    ("FrozenLake-v1", {"is_slippery": True}, (4, 4)),
    ("CliffWalking-v1", {}, (4, 12)),
    ("Taxi-v4", {}, None),
]


def _terminal_states(table):
    return {
        int(s2)
        for rows in table.values()
        for outcomes in rows.values()
        for prob, s2, _, done in outcomes
        if done and prob > 0
    }


@pytest.mark.parametrize("name, kwargs, layout", ENVS)
def test_transitions_equal_unwrapped_p_entry_by_entry(name, kwargs, layout):
    env = gym.make(name, **kwargs)
    table = env.unwrapped.P
    mdp = TabularMDP.from_gymnasium(env, horizon=5)
    assert mdp.layout == layout
    dense = mdp.dense_transitions().numpy()
    reference = mdp.reference_reward.numpy()
    terminal = _terminal_states(table)
    assert terminal, "every one of these environments has terminal states"
    for s, rows in table.items():
        for a, outcomes in rows.items():
            if s in terminal:
                # made absorbing, earning nothing after the episode ended
                expected = np.zeros(mdp.num_states)
                expected[s] = 1.0
                expected_reward = 0.0
            else:
                expected = np.zeros(mdp.num_states)
                expected_reward = 0.0
                for prob, s2, r, _ in outcomes:
                    expected[int(s2)] += prob
                    expected_reward += prob * r
            # float64 sums of the same numbers: equal to rounding
            np.testing.assert_allclose(dense[s, a], expected, rtol=0, atol=1e-12)
            assert reference[s, a] == pytest.approx(expected_reward, abs=1e-12)
    np.testing.assert_allclose(mdp.initial.numpy(), env.unwrapped.initial_state_distrib)


def test_cliffwalking_goal_is_absorbing_and_features():
    env = gym.make("CliffWalking-v1")
    # Gymnasium's own table lets the goal (47) move on; the episode ends on arrival instead
    assert env.unwrapped.P[47][0][0][1] != 47
    mdp = TabularMDP.from_gymnasium(env, features="coordinates", horizon=30)
    dense = mdp.dense_transitions()
    assert torch.all(dense[47, :, 47] == 1)
    assert mdp.feature_names == ("row", "col") and mdp.num_features == 2
    np.testing.assert_allclose(mdp.features[47, 0].numpy(), [1.0, 1.0])
    np.testing.assert_allclose(mdp.features[36, 0].numpy(), [1.0, 0.0])
    own = np.random.default_rng(0).standard_normal((48, 3))
    mdp2 = TabularMDP.from_gymnasium(env, features=own, horizon=30)
    np.testing.assert_allclose(mdp2.features[:, 0].numpy(), own)


def test_from_gymnasium_errors():
    with pytest.raises(ValueError, match=r"unwrapped\.P"):
        TabularMDP.from_gymnasium(gym.make("CartPole-v1"), horizon=5)
    with pytest.raises(ValueError, match="coordinates"):
        TabularMDP.from_gymnasium(gym.make("Taxi-v4"), features="coordinates", horizon=5)
    with pytest.raises(ValueError, match="features must be"):
        TabularMDP.from_gymnasium(gym.make("FrozenLake-v1"), features="pixels", horizon=5)
    with pytest.raises(ValueError, match="horizon is required"):
        TabularMDP.from_gymnasium(gym.make("CliffWalking-v1"))
    assert TabularMDP.from_gymnasium(gym.make("FrozenLake-v1")).horizon == 100


def test_layout_and_reference_reward_validation():
    p = np.full((4, 2, 4), 0.25)
    common = dict(transitions=p, initial=np.full(4, 0.25), features=np.eye(4), horizon=3)
    assert TabularMDP.from_dense(**common, layout=(2, 2)).layout == (2, 2)
    with pytest.raises(ValueError, match="layout must be"):
        TabularMDP.from_dense(**common, layout=(3, 2))
    with pytest.raises(ValueError, match=r"reference_reward must have shape \(4, 2\)"):
        TabularMDP.from_dense(**common, reference_reward=np.zeros(4))
    with pytest.raises(ValueError, match="reference_reward must be finite"):
        TabularMDP.from_dense(**common, reference_reward=np.full((4, 2), np.nan))
    mdp = TabularMDP.from_dense(**common, layout=(2, 2), reference_reward=np.ones((4, 2)))
    moved = mdp.to(dtype=torch.float32)
    assert moved.layout == (2, 2) and moved.reference_reward.dtype == torch.float32
    assert repr(mdp) == (
        "TabularMDP(S=4, A=2, F=4, K=4, horizon=3, dtype=torch.float64, layout=2x2, "
        "reference_reward)"
    )


# ---------------------------------------------------------------- ragged episodes


def _frozenlake(horizon=8):
    env = gym.make("FrozenLake-v1", is_slippery=True)
    return env, TabularMDP.from_gymnasium(env, horizon=horizon)


def test_ragged_episodes_same_log_likelihood_as_padded_masked_batch():
    env, mdp = _frozenlake()
    policy = np.full((16, 4), 0.25)
    episodes = rollout_episodes(env, policy, num_episodes=40, max_steps=8, seed=3)
    lengths = [len(e["actions"]) for e in episodes]
    assert min(lengths) < 8 == max(lengths), "want both terminated and full episodes"
    ragged = TrajectoryBatch.from_episodes(episodes, mdp=mdp)
    # the same data, padded by hand and masked with explicit lengths
    states = np.full((40, 9), 7)  # junk past the lengths: must be ignored
    actions = np.full((40, 8), 2)
    for i, e in enumerate(episodes):
        states[i, : lengths[i] + 1] = e["observations"]
        actions[i, : lengths[i]] = e["actions"]
    padded = TrajectoryBatch.create(states=states, actions=actions, lengths=lengths, mdp=mdp)
    # -1 padding without lengths: lengths are inferred
    minus_one = TrajectoryBatch.create(states=ragged.states, actions=ragged.actions)
    assert minus_one.lengths.tolist() == lengths
    reward = LinearReward(mdp.features)
    theta = torch.randn(3, 1, 16, dtype=torch.float64)
    for kind in ("global", "causal"):
        normalizer = ExactNormalizer(mdp, kind=kind)
        d = MaxEntTrajectory(theta, reward, normalizer)
        lp = [d.log_prob(b.as_tensor()) for b in (ragged, padded, minus_one)]
        assert lp[0].shape == (3, 40) and torch.isfinite(lp[0]).all()
        # identical tensors in, identical arithmetic: equal to rounding
        torch.testing.assert_close(lp[0], lp[1], rtol=0, atol=1e-12)
        torch.testing.assert_close(lp[0], lp[2], rtol=0, atol=1e-12)


def test_from_episodes_forms_and_errors():
    a = TrajectoryBatch.from_episodes(states=[[0, 1, 2], [3, 4]], actions=[[1, 1], [0]])
    b = TrajectoryBatch.from_episodes([([0, 1, 2], [1, 1]), {"states": [3, 4], "actions": [0]}])
    assert torch.equal(a.states, b.states) and a.lengths.tolist() == [2, 1]
    assert repr(a) == "TrajectoryBatch(n=2, horizon=2, lengths 1-2, mean 1.5)"
    with pytest.raises(ValueError, match="expected L \\+ 1 states"):
        TrajectoryBatch.from_episodes(states=[[0, 1]], actions=[[1, 1]])
    with pytest.raises(ValueError, match="no actions"):
        TrajectoryBatch.from_episodes(states=[[0]], actions=[[]])
    with pytest.raises(ValueError, match="more than the horizon T = 1; pass truncate=True"):
        TrajectoryBatch.from_episodes(states=[[0, 1, 2]], actions=[[1, 1]], horizon=1)
    cut = TrajectoryBatch.from_episodes(
        states=[[0, 1, 2]], actions=[[1, 1]], horizon=1, truncate=True
    )
    assert cut.states.tolist() == [[0, 1]]
    with pytest.raises(ValueError, match="either episodes or"):
        TrajectoryBatch.from_episodes()
    with pytest.raises(ValueError, match="same number of episodes"):
        TrajectoryBatch.from_episodes(states=[[0, 1]], actions=[])
    with pytest.raises(ValueError, match="keys 'observations'"):
        TrajectoryBatch.from_episodes([{"obs": [0, 1], "actions": [0]}])
    with pytest.raises(ValueError, match="must hold integers"):
        TrajectoryBatch.from_episodes(states=[[0.5, 1]], actions=[[0]])


def test_padding_inference_errors():
    with pytest.raises(ValueError, match="padding at step 1 followed by an action at step 2"):
        TrajectoryBatch.create(states=[[0, 1, 2, 3]], actions=[[0, -1, 1]])
    with pytest.raises(ValueError, match="no observed action"):
        TrajectoryBatch.create(states=[[0, -1]], actions=[[-1]])
    with pytest.raises(ValueError, match=r"states\[0, 2\] is observed after the last action"):
        TrajectoryBatch.create(states=[[0, 1, 2]], actions=[[0, -1]])
    with pytest.raises(ValueError, match="or -1 for padding"):
        TrajectoryBatch.create(states=[[0, 1]], actions=[[-2]])


def test_rollout_policy_forms():
    env, mdp = _frozenlake(horizon=6)
    r = torch.zeros(16, 4, dtype=torch.float64)
    pi_t = soft_policy(mdp, r, kind="causal").exp()  # (T, S, A)
    eps = rollout_episodes(env, pi_t, num_episodes=5, max_steps=6, seed=0)
    again = rollout_episodes(env, pi_t, num_episodes=5, max_steps=6, seed=0)
    assert all(np.array_equal(x["actions"], y["actions"]) for x, y in zip(eps, again, strict=True))
    always_left = rollout_episodes(env, lambda s, t, rng: 0, num_episodes=2, max_steps=6, seed=0)
    assert all((e["actions"] == 0).all() for e in always_left)
    with pytest.raises(ValueError, match="sum to 1"):
        rollout_episodes(env, np.zeros((16, 4)), num_episodes=1, max_steps=3, seed=0)
    with pytest.raises(ValueError, match="num_episodes must be an integer"):
        rollout_episodes(env, pi_t, num_episodes=0, max_steps=3, seed=0)


# Minari's DataCollector leaves a tempfile.TemporaryDirectory whose finalizer raises at
# garbage collection (minari 0.5.4; not our object), which pytest reports as unraisable.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_minari_dataset_from_data_collector(tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    pytest.importorskip("jax")  # Minari's DataCollector needs it ("minari[create]")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    env, mdp = _frozenlake(horizon=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Minari's own deprecation and space notices
        collector = minari.DataCollector(gym.make("FrozenLake-v1", is_slippery=True))
        rng = np.random.default_rng(0)
        recorded = []
        for i in range(6):
            obs, _ = collector.reset(seed=i)
            states, actions = [int(obs)], []
            for _ in range(10):
                action = int(rng.integers(4))
                obs, _, terminated, truncated, _ = collector.step(action)
                states.append(int(obs))
                actions.append(action)
                if terminated or truncated:
                    break
            recorded.append((states, actions))
        dataset = collector.create_dataset(dataset_id="bayesirl/frozenlake/test-v0")
        collector.close()
        batch = load_minari("bayesirl/frozenlake/test-v0", mdp=mdp)
        same = load_minari(dataset, mdp=mdp)
    expected = TrajectoryBatch.from_episodes(recorded, mdp=mdp)
    assert torch.equal(batch.states, expected.states)
    assert torch.equal(batch.actions, expected.actions)
    assert torch.equal(same.lengths, expected.lengths)
