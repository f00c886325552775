"""Episodes that end early: truncated data (lengths) vs the same episodes padded to T.

Usage: .venv/bin/python benchmarks/early_ending_episodes.py [--demos 60] [--methods nuts ...]

A CliffWalking-style grid (4 x 12, start bottom-left, goal bottom-right, the cells between
them a cliff that sends the agent back to the start), four moves that slip to a random
one with probability 0.1, horizon 40, the goal absorbing (every action stays, no
features). Features: living (1 off the goal), cliff (the intended move enters the cliff),
height (the row, 0 at the bottom, off the goal). Demonstrations are exact draws of the
global maxent model with given initial state, then stored two ways:

(a) truncated: each episode ends when it reaches the goal (``lengths``, -1 padding);
(b) padded: the same episodes continued to T at the absorbing goal (action 0).

Both give the same posterior (after the goal every action has reward 0 and the same soft
value, so the padding adds a constant). The script times ``fit(model, data, method=m)``
for both (after one untimed warm-up fit; best of 3 for laplace and svi) and prints a table
with the ratio truncated / padded, and the posterior means.
One torch thread; the load average is printed (the machine is shared).
"""

import argparse
import time

import numpy as np
import torch

from bayes_irl import LinearReward, TabularMDP, TrajectoryBatch
from bayes_irl.inference import ExactNormalizer, fit
from bayes_irl.models import DemonstrationModel
from bayes_irl.soft_bellman import sample_maxent_trajectories

ROWS, COLS, HORIZON, SLIP = 4, 12, 40, 0.1
MOVES = [(-1, 0), (0, 1), (1, 0), (0, -1)]  # up, right, down, left
TRUE_THETA = torch.tensor([-1.0, -5.0, -0.3], dtype=torch.float64)


def cliff_world() -> tuple[TabularMDP, int]:
    """The MDP (S = 48, A = 4, K = 3) and its goal state."""
    num_states, num_actions = ROWS * COLS, len(MOVES)
    start, goal = (ROWS - 1) * COLS, ROWS * COLS - 1
    cliff = set(range(start + 1, goal))

    def step(s: int, a: int) -> int:
        row, col = divmod(s, COLS)
        row = min(max(row + MOVES[a][0], 0), ROWS - 1)
        col = min(max(col + MOVES[a][1], 0), COLS - 1)
        nxt = row * COLS + col
        return start if nxt in cliff else nxt

    transitions = np.zeros((num_states, num_actions, num_states))
    features = np.zeros((num_states, num_actions, 3))
    for s in range(num_states):
        for a in range(num_actions):
            if s == goal:
                transitions[s, a, s] = 1.0
                continue
            transitions[s, a, step(s, a)] += 1 - SLIP
            for b in range(num_actions):
                transitions[s, a, step(s, b)] += SLIP / num_actions
            row, col = divmod(s, COLS)
            target = (min(max(row + MOVES[a][0], 0), ROWS - 1) * COLS
                      + min(max(col + MOVES[a][1], 0), COLS - 1))
            features[s, a] = [1.0, float(target in cliff), float(ROWS - 1 - row)]
    initial = np.zeros(num_states)
    initial[start] = 1.0
    mdp = TabularMDP.from_dense(transitions=transitions, initial=initial, features=features,
                                horizon=HORIZON, feature_names=["living", "cliff", "height"],
                                layout=(ROWS, COLS))
    return mdp, goal


def episodes(mdp: TabularMDP, goal: int, num: int, seed: int):
    """``(truncated, padded)`` TrajectoryBatches of the same ``num`` episodes."""
    gen = torch.Generator().manual_seed(seed)
    rewards = torch.einsum("k,sak->sa", TRUE_THETA, mdp.features)
    draws = sample_maxent_trajectories(mdp, rewards, num, kind="global", generator=gen)
    states, actions = draws[..., 0].clone(), draws[:, :-1, 1].clone()
    at_goal = states[:, 1:] == goal  # (n, T): s_{t+1} is the goal
    reached = at_goal.any(1)
    lengths = torch.where(reached, at_goal.int().argmax(1) + 1, torch.tensor(HORIZON))
    steps = torch.arange(HORIZON + 1)
    padded_states = torch.where(steps[None] > lengths[:, None], goal, states)
    padded_actions = torch.where(steps[None, :-1] >= lengths[:, None], 0, actions)
    truncated = TrajectoryBatch.create(states=states, actions=actions, lengths=lengths)
    padded = TrajectoryBatch.create(states=padded_states, actions=padded_actions)
    return truncated, padded


def timed_fit(model, data, method: str, seed: int, repeats: int):
    seconds = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        post = fit(model, data, method=method, seed=seed, progress_bar=False)
        seconds = min(seconds, time.perf_counter() - start)
    mean = torch.as_tensor(post.samples["weights"]).reshape(-1, 3).mean(0)
    return seconds, mean, post.attrs.get("sampler", post.attrs.get("potential", "-"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--demos", type=int, default=60)
    parser.add_argument("--methods", nargs="+", default=["nuts", "laplace", "svi"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    mdp, goal = cliff_world()
    model = DemonstrationModel(LinearReward(mdp.features, feature_names=mdp.feature_names),
                               ExactNormalizer(mdp, kind="global"), given_initial_state=True)
    truncated, padded = episodes(mdp, goal, args.demos, args.seed)
    lengths = truncated.lengths.float()
    print(f"4x12 cliff grid, slip {SLIP}, T = {HORIZON}, {args.demos} episodes, lengths "
          f"{lengths.min():.0f}-{lengths.max():.0f} (mean {lengths.mean():.1f}); global model, "
          f"given initial state; load {open('/proc/loadavg').read().split()[0]}")
    fast = model.sufficient_statistics_potential(model.prepare_data(truncated))
    print(f"sufficient-statistics potential on the truncated data: {type(fast).__name__}")
    # one untimed fit first: one-time costs of the process (lazy imports, loading the
    # compiled kernels from Numba's cache) would otherwise land on the first timed fit
    fit(model, padded, method="laplace", seed=args.seed, progress_bar=False)
    print(f"{'method':8} {'truncated s':>12} {'padded s':>10} {'ratio':>7}   posterior means "
          "(truncated | padded)")
    for method in args.methods:
        repeats = 1 if method == "nuts" else 3  # best of 3 for the sub-second fits
        t_sec, t_mean, _ = timed_fit(model, truncated, method, args.seed, repeats)
        p_sec, p_mean, _ = timed_fit(model, padded, method, args.seed, repeats)
        fmt = lambda m: " ".join(f"{x:6.3f}" for x in m.tolist())  # noqa: E731
        print(f"{method:8} {t_sec:12.2f} {p_sec:10.2f} {t_sec / p_sec:7.2f}   "
              f"{fmt(t_mean)} | {fmt(p_mean)}")


if __name__ == "__main__":
    main()
