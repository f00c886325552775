"""Write a small seeded gridworld MDP and MCE-optimal demonstrations as .npz files.

Plain numpy (no bayes_irl, no imitation), so the imitation runner can be tested end to
end in its own venv. The files follow the benchmark's exchange format:

MDP npz:   transitions (S, A, S) float  [or successors/successor_probs with --sparse]
           initial (S,) float, features (S, K) float, horizon int, true_weights (K,)
demos npz: states (n, H+1) int, actions (n, H) int, lengths (n,) int (all == H)

Gridworld: N x N cells, state s = row * N + col, 5 actions (0 up, 1 down, 2 left,
3 right, 4 stay). With probability 1 - slip the intended move happens; with
probability slip the move is replaced by a uniformly random one of the 5 actions
(so the intended outcome has probability 1 - slip + slip/5). Moves off the grid
leave the agent in place. Initial state uniform. K random features per state,
standard normal and centred over states; true weights standard normal.
Horizon H = 2N actions. Reward features[s] @ w is earned at steps t = 0..H-1 on
(s_t, a_t); the final state s_H earns nothing.

Demonstrations are sampled from the finite-horizon, undiscounted maximum causal
entropy (soft-optimal) policy:  V_H = 0,  Q_t(s, a) = r(s) + sum_s' P(s'|s,a) V_{t+1}(s'),
V_t(s) = logsumexp_a Q_t(s, a),  pi_t(a|s) = exp(Q_t(s, a) - V_t(s)).

Usage: python make_example.py --n 10 --demos 50 --seed 0 --out-dir DIR
       -> DIR/mdp_n10_s0.npz, DIR/demos_n10_d50_s0.npz (names printed)
"""

from __future__ import annotations

import argparse
import os

import numpy as np

MOVES = [(-1, 0), (1, 0), (0, -1), (0, 1), (0, 0)]  # up, down, left, right, stay


def gridworld_transitions(n: int, slip: float) -> np.ndarray:
    S, A = n * n, len(MOVES)
    det = np.zeros((S, A), dtype=np.int64)  # deterministic outcome of each action
    for r in range(n):
        for c in range(n):
            for a, (dr, dc) in enumerate(MOVES):
                rr, cc = r + dr, c + dc
                if not (0 <= rr < n and 0 <= cc < n):
                    rr, cc = r, c
                det[r * n + c, a] = rr * n + cc
    P = np.zeros((S, A, S))
    for s in range(S):
        for a in range(A):
            P[s, a, det[s, a]] += 1.0 - slip
            for b in range(A):
                P[s, a, det[s, b]] += slip / A
    return P


def soft_policy(P: np.ndarray, reward: np.ndarray, horizon: int) -> np.ndarray:
    """pi[t, s, a] for t = 0..H-1 (finite horizon, discount 1, reward on s_0..s_{H-1})."""
    S, A, _ = P.shape
    V = np.zeros(S)
    pi = np.zeros((horizon, S, A))
    for t in reversed(range(horizon)):
        Q = reward[:, None] + P @ V  # (S, A)
        m = Q.max(axis=1, keepdims=True)
        V = (m + np.log(np.exp(Q - m).sum(axis=1, keepdims=True)))[:, 0]
        pi[t] = np.exp(Q - V[:, None])
    return pi


def sample_demos(P, initial, pi, n_demos, rng):
    H, S, A = pi.shape
    states = np.zeros((n_demos, H + 1), dtype=np.int64)
    actions = np.zeros((n_demos, H), dtype=np.int64)
    states[:, 0] = rng.choice(S, size=n_demos, p=initial)
    cumP = np.cumsum(P, axis=2)
    for t in range(H):
        s = states[:, t]
        cum_pi = np.cumsum(pi[t, s], axis=1)
        a = np.minimum((rng.random((n_demos, 1)) > cum_pi).sum(axis=1), A - 1)
        nxt = (rng.random((n_demos, 1)) > cumP[s, a]).sum(axis=1)
        actions[:, t] = a
        states[:, t + 1] = np.minimum(nxt, S - 1)
    return states, actions


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=10, help="grid side N (S = N*N)")
    p.add_argument("--demos", type=int, default=50, help="number of demonstrations")
    p.add_argument("--k", type=int, default=4, help="number of state features")
    p.add_argument("--slip", type=float, default=0.1)
    p.add_argument("--horizon", type=int, default=None, help="default 2N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--sparse",
        action="store_true",
        help="write successors/successor_probs instead of dense transitions",
    )
    p.add_argument("--out-dir", default=".")
    args = p.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    n, K = args.n, args.k
    H = args.horizon if args.horizon is not None else 2 * n
    S = n * n
    P = gridworld_transitions(n, args.slip)
    initial = np.full(S, 1.0 / S)
    features = rng.standard_normal((S, K))
    features -= features.mean(axis=0, keepdims=True)
    w = rng.standard_normal(K)
    reward = features @ w
    pi = soft_policy(P, reward, H)
    states, actions = sample_demos(P, initial, pi, args.demos, rng)

    os.makedirs(args.out_dir, exist_ok=True)
    mdp_path = os.path.join(args.out_dir, f"mdp_n{n}_s{args.seed}.npz")
    demo_path = os.path.join(args.out_dir, f"demos_n{n}_d{args.demos}_s{args.seed}.npz")
    mdp = dict(initial=initial, features=features, horizon=np.int64(H), true_weights=w)
    if args.sparse:
        F = int((P > 0).sum(axis=2).max())
        succ = np.zeros((S, len(MOVES), F), dtype=np.int64)
        probs = np.zeros((S, len(MOVES), F))
        for s in range(S):
            for a in range(len(MOVES)):
                nz = np.flatnonzero(P[s, a])
                succ[s, a, : len(nz)] = nz
                succ[s, a, len(nz) :] = s  # padding: zero probability
                probs[s, a, : len(nz)] = P[s, a, nz]
        mdp.update(successors=succ, successor_probs=probs)
    else:
        mdp.update(transitions=P)
    np.savez(mdp_path, **mdp)
    np.savez(
        demo_path, states=states, actions=actions, lengths=np.full(args.demos, H, dtype=np.int64)
    )
    print(mdp_path)
    print(demo_path)


if __name__ == "__main__":
    main()
