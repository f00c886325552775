"""Small exact references shared by the tests: tiny MDPs and brute-force enumeration."""

import itertools

import torch

from bayes_irl import TabularMDP


def tiny_mdp(
    *,
    seed=0,
    num_states=3,
    num_actions=2,
    horizon=3,
    num_features=2,
    deterministic=False,
    action_base=True,
    state_features=False,
):
    """A random tiny MDP with some zero transitions and a non-uniform action base measure."""
    g = torch.Generator().manual_seed(seed)
    if deterministic:
        succ = torch.randint(num_states, (num_states, num_actions), generator=g)
        p = torch.nn.functional.one_hot(succ, num_states).to(torch.float64)
    else:
        p = torch.rand(num_states, num_actions, num_states, generator=g, dtype=torch.float64)
        p[0, 0, -1] = 0.0  # a zero entry exercises padding in the sparse form
        p = p / p.sum(-1, keepdim=True)
    init = torch.rand(num_states, generator=g, dtype=torch.float64)
    shape = (
        (num_states, num_features) if state_features else (num_states, num_actions, num_features)
    )
    features = torch.randn(*shape, generator=g, dtype=torch.float64)
    base = None
    if action_base:
        base = torch.log_softmax(
            torch.randn(num_states, num_actions, generator=g, dtype=torch.float64), -1
        )
    return TabularMDP.from_dense(
        transitions=p,
        initial=init / init.sum(),
        features=features,
        horizon=horizon,
        action_log_base=base,
    )


def all_trajectories(mdp):
    """Every (s_0, a_0, ..., s_T) of the MDP in the (N, T + 1, 2) encoding."""
    T, S, A = mdp.horizon, mdp.num_states, mdp.num_actions
    rows = []
    for states in itertools.product(range(S), repeat=T + 1):
        for actions in itertools.product(range(A), repeat=T):
            rows.append(torch.tensor([list(states), list(actions) + [-1]]).T)
    return torch.stack(rows)


def brute_force_log_weights(mdp, step_rewards, trajectories):
    """log b(x) + R(x) for every trajectory (-inf where b = 0), by explicit loops."""
    dense = mdp.dense_transitions()
    out = []
    for x in trajectories:
        s, a = x[:, 0], x[:-1, 1]
        total = mdp.initial[s[0]].log()
        for t in range(mdp.horizon):
            total = total + step_rewards[s[t], a[t]] + mdp.action_log_base[s[t], a[t]]
            total = total + dense[s[t], a[t], s[t + 1]].log()
        out.append(total)
    return torch.stack(out)


def table_reward(mdp):
    """A reward whose theta is the step table itself: ``theta = r.reshape(..., S * A)``."""
    from bayes_irl import TabularReward

    return TabularReward(mdp.num_states, mdp.num_actions, per_action=True, dtype=mdp.dtype)


def as_theta(step_rewards):
    """Flatten a step table ``r[..., s, a]`` to the theta of :func:`table_reward`."""
    return step_rewards.reshape(*step_rewards.shape[:-2], -1)


def maxent(mdp, step_rewards, normalizer, **options):
    """``MaxEntTrajectory`` of an arbitrary step table ``r[..., s, a]`` (via table_reward)."""
    from bayes_irl.models import MaxEntTrajectory

    return MaxEntTrajectory(as_theta(step_rewards), table_reward(mdp), normalizer, **options)


def item_pool(mdp, reward_model, *, num_rewards: int, per_reward: int = 3, seed: int = 5):
    """Diverse item trajectories for preference tests: maxent samples under random rewards.

    Returns:
        Prepared trajectories, shape (num_rewards * per_reward, T + 1, 2).
    """
    from bayes_irl.soft_bellman import sample_maxent_trajectories

    gen = torch.Generator().manual_seed(seed)
    return torch.cat([
        sample_maxent_trajectories(mdp, reward_model.step_rewards(
            torch.randn(reward_model.num_params, generator=gen, dtype=torch.float64)),
            per_reward, generator=gen)
        for _ in range(num_rewards)])


def grid_posterior(model, data, lo, hi, num: int):
    """Posterior of a model with one 2-D ``weights`` site on a ``num`` x ``num`` grid.

    Args:
        model: the model; data: its prepared data.
        lo, hi: corners of the grid, two values each.
        num: points per axis.

    Returns:
        ``(grid, weights)``: the points (num², 2) and their normalised posterior weights.
    """
    from bayes_irl.inference import pointwise_log_likelihood

    axes = [torch.linspace(float(lo[k]), float(hi[k]), num, dtype=torch.float64) for k in range(2)]
    grid = torch.cartesian_prod(*axes)
    _, log_joint = pointwise_log_likelihood(model, data, {"weights": grid}, chunk_size=10_000)
    return grid, torch.softmax(log_joint, 0)


def grid_moments(model, data, lo, hi, num: int):
    """Posterior mean and sd (2,) by quadrature on the grid of :func:`grid_posterior`."""
    grid, w = grid_posterior(model, data, lo, hi, num)
    mean = (w[:, None] * grid).sum(0)
    return mean, (w[:, None] * (grid - mean) ** 2).sum(0).sqrt()


def exact_posterior_moments(model, data):
    """Exact posterior mean and sd by quadrature: a coarse grid, then a fine one at +-8 sd."""
    mean, sd = grid_moments(model, data, [-3.0, -3.0], [3.0, 3.0], 121)
    mean, sd = grid_moments(model, data, mean - 8 * sd, mean + 8 * sd, 161)
    # one more pass on the refined window: moments stable to < 1e-3 sd between passes
    mean2, sd2 = grid_moments(model, data, mean - 8 * sd, mean + 8 * sd, 161)
    assert torch.allclose(mean, mean2, atol=1e-3 * sd.min().item())
    return mean2, sd2


def random_sparse_mdp(seed, num_states=36, num_actions=4, fan_out=3, horizon=12, num_features=4):
    """The calibration benchmarks' random sparse MDP and a true theta ~ N(0, I).

    Each (s, a) moves to ``fan_out`` distinct random states with Dirichlet(1) probabilities;
    uniform start; standardised Gaussian state features (S, D). Also used by
    benchmarks/importance_posterior_bias.py (one definition).

    Returns:
        ``(mdp, theta)``: a :class:`TabularMDP` and a numpy array (D,).
    """
    import numpy as np

    from bayes_irl.random_mdp import random_sparse_mdp as build

    rng = np.random.default_rng(seed)
    mdp = build(num_states=num_states, num_actions=num_actions, fan_out=fan_out,
                horizon=horizon, num_features=num_features, rng=rng)
    return mdp, rng.standard_normal(num_features)


def wait_for_file(path, process, timeout=300):
    """Wait until ``path`` exists while the subprocess ``process`` still runs."""
    import time

    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.2)


def exact_state_marginals(proposal):
    """A tabular proposal's marginals of s_t, t = 0..T, by the forward recursion: (T + 1, S)."""
    mdp = proposal.mdp
    with torch.no_grad():
        d = proposal._initial_log_probs().exp()
        out = [d]
        pi = proposal.policy.log_probs().exp()
        for t in range(mdp.horizon):
            flow = d[:, None, None] * pi[t][:, :, None] * proposal._transition_log_probs(t).exp()
            d = torch.zeros_like(d).index_add(0, mdp.successors.reshape(-1), flow.reshape(-1))
            out.append(d)
    return torch.stack(out)
