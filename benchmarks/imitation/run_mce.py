"""Run imitation's tabular MCE IRL on a benchmark MDP/demos pair and write JSON.

Run with benchmarks/.venv-imitation/bin/python (see setup.sh):

    python run_mce.py --mdp MDP.npz --demos DEMOS.npz --out result.json \
        [--max-iter 1000] [--lr 0.01] [--seed 0] [--occupancy imitation|aligned]

Inputs (.npz):
  MDP:   transitions (S, A, S) [or successors (S, A, F) int + successor_probs (S, A, F)],
         initial (S,), features (S, K) [(S, A, K) only if identical across actions],
         horizon (scalar H = actions per trajectory), optional true_weights (K,).
  demos: states (n, H+1) int, actions (n, H) int, optional lengths (n,) (must all == H).

The reward model is imitation's BasicRewardNet with no hidden layers on the state
features (use_action=False): r(s) = features[s] @ w + b, linear like bayes_irl's. The bias
b has an identically zero gradient in MCE IRL (occupancies sum to the same total) and
does not affect the Pearson correlation that is recorded.

Horizon alignment (see README): the env gets horizon H, so imitation's soft value
iteration (mce_partition_fh) plans H actions with rewards on s_0..s_{H-1}, exactly the
benchmark's convention. Stock MCEIRL ("--occupancy imitation", default) then matches
state occupancies summed over s_0..s_H (H+1 states, both for the demos, which are passed
as imitation Trajectory objects with H+1 observations, and for the model). The extra
s_H term is not part of the max-ent likelihood gradient for rewards on s_0..s_{H-1};
it still vanishes at the true reward in expectation, so the estimator is consistent,
but it is not the exact maximum-likelihood fixed point. "--occupancy aligned" runs a
subclass whose only change is that both occupancies are summed over s_0..s_{H-1}, which
makes the update the exact gradient of the max-ent log-likelihood (the same objective
bayes_irl's exact normaliser uses).
"""

from __future__ import annotations

import os
import time

_T_START = time.perf_counter()
# One BLAS / OpenMP thread; must be set before numpy / torch are imported.
for _var in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch as th  # noqa: E402

th.set_num_threads(1)
try:
    th.set_num_interop_threads(1)
except RuntimeError:  # already set
    pass

import imitation  # noqa: E402
from imitation.algorithms import mce_irl  # noqa: E402
from imitation.data import types  # noqa: E402
from imitation.rewards import reward_nets  # noqa: E402
from seals import base_envs  # noqa: E402

_T_IMPORTED = time.perf_counter()


def load_mdp(path: str, notes: list) -> dict:
    z = np.load(path)
    keys = set(z.files)
    if "transitions" in keys:
        P = np.asarray(z["transitions"], dtype=np.float64)
    elif {"successors", "successor_probs"} <= keys:
        succ = np.asarray(z["successors"], dtype=np.int64)
        probs = np.asarray(z["successor_probs"], dtype=np.float64)
        S, A, _ = succ.shape
        P = np.zeros((S, A, S))
        s_idx = np.broadcast_to(np.arange(S)[:, None, None], succ.shape)
        a_idx = np.broadcast_to(np.arange(A)[None, :, None], succ.shape)
        np.add.at(P, (s_idx, a_idx, succ), probs)
        notes.append("MDP given as sparse successors/successor_probs; densified to (S, A, S).")
    else:
        raise ValueError(f"{path}: needs 'transitions' or 'successors'+'successor_probs'")
    S, A, S2 = P.shape
    if S != S2:
        raise ValueError(f"transitions must be (S, A, S), got {P.shape}")
    row_err = np.abs(P.sum(axis=2) - 1.0).max()
    if row_err > 1e-6:
        raise ValueError(f"transition rows do not sum to 1 (max error {row_err:.2e})")
    initial = np.asarray(z["initial"], dtype=np.float64)
    if initial.shape != (S,) or abs(initial.sum() - 1.0) > 1e-6:
        raise ValueError("initial must be a distribution of shape (S,)")
    features = np.asarray(z["features"], dtype=np.float64)
    if features.ndim == 3:
        if features.shape[:2] != (S, A):
            raise ValueError(f"features (S, A, K) expected, got {features.shape}")
        if not np.allclose(features, features[:, :1, :]):
            raise ValueError(
                "action-dependent features (S, A, K): imitation's MCEIRL supports only "
                "state rewards r(s), so this MDP cannot be run with it"
            )
        features = features[:, 0, :]
        notes.append("features were (S, A, K) but identical across actions; used (S, K).")
    if features.ndim != 2 or features.shape[0] != S:
        raise ValueError(f"features must be (S, K), got {features.shape}")
    horizon = int(np.asarray(z["horizon"]).item())
    true_w = np.asarray(z["true_weights"], dtype=np.float64) if "true_weights" in keys else None
    if true_w is not None and true_w.shape != (features.shape[1],):
        raise ValueError(f"true_weights must be (K,) = ({features.shape[1]},)")
    return dict(P=P, initial=initial, features=features, horizon=horizon, true_w=true_w)


def load_demos(path: str, S: int, A: int, H: int) -> tuple[np.ndarray, np.ndarray]:
    z = np.load(path)
    states = np.asarray(z["states"], dtype=np.int64)
    actions = np.asarray(z["actions"], dtype=np.int64)
    n = states.shape[0]
    if states.shape != (n, H + 1) or actions.shape != (n, H):
        raise ValueError(
            f"demos must have states (n, H+1) and actions (n, H) with H={H}; "
            f"got {states.shape}, {actions.shape}"
        )
    if "lengths" in z.files:
        lengths = np.asarray(z["lengths"])
        if not np.all(lengths == H):
            raise ValueError(
                "all demonstration lengths must equal the horizon H: imitation's MCEIRL "
                "compares demo occupancy with a full-horizon model occupancy"
            )
    if states.min() < 0 or states.max() >= S or actions.min() < 0 or actions.max() >= A:
        raise ValueError("demo state/action index out of range")
    return states, actions


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x = x - x.mean()
    y = y - y.mean()
    den = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / den) if den > 0 else float("nan")


class AlignedMCEIRL(mce_irl.MCEIRL):
    """MCEIRL whose model occupancy is summed over s_0..s_{H-1} (rewarded steps only).

    Identical to imitation 1.0.1's MCEIRL._train_step except for the slice D[:H]. The
    demo occupancy must be given as an ndarray summed over the same steps.
    """

    def _train_step(self, obs_mat):
        self.optimizer.zero_grad()
        predicted_r = mce_irl.squeeze_r(self.reward_net(obs_mat, None, None, None))
        predicted_r_np = predicted_r.detach().cpu().numpy()
        D, _ = mce_irl.mce_occupancy_measures(
            self.env, reward=predicted_r_np, discount=self.discount
        )
        assert self.discount == 1.0
        visitations = D[: self.env.horizon].sum(axis=0)
        weights_th = th.as_tensor(
            visitations - self.demo_state_om,
            dtype=self.reward_net.dtype,
            device=self.reward_net.device,
        )
        loss = th.dot(weights_th, predicted_r)
        loss.backward()
        self.optimizer.step()
        return predicted_r_np, visitations


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="imitation MCE IRL benchmark runner")
    p.add_argument("--mdp", required=True)
    p.add_argument("--demos", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--max-iter", type=int, default=1000)
    p.add_argument(
        "--lr", type=float, default=1e-2, help="Adam learning rate (imitation default 1e-2)"
    )
    p.add_argument("--seed", type=int, default=0, help="seeds torch (reward-net init) and the rng")
    p.add_argument("--linf-eps", type=float, default=1e-3, help="imitation default 1e-3")
    p.add_argument("--grad-l2-eps", type=float, default=1e-4, help="imitation default 1e-4")
    p.add_argument(
        "--occupancy",
        choices=("imitation", "aligned"),
        default="imitation",
        help="imitation: stock MCEIRL, occupancy over s_0..s_H; "
        "aligned: occupancy over s_0..s_{H-1} (exact max-ent gradient)",
    )
    p.add_argument(
        "--obs",
        choices=("features", "onehot"),
        default="features",
        help="observation matrix: the given state features (linear reward) "
        "or one-hot states (tabular reward)",
    )
    p.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        default="float64",
        help="reward-net dtype (imitation's default would be float32)",
    )
    p.add_argument(
        "--record-every",
        type=int,
        default=1,
        help="record time/correlation every this many iterations (and the last)",
    )
    args = p.parse_args(argv)

    notes: list[str] = []
    th.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    mdp = load_mdp(args.mdp, notes)
    P, features, H, true_w = mdp["P"], mdp["features"], mdp["horizon"], mdp["true_w"]
    S, A, _ = P.shape
    states, actions = load_demos(args.demos, S, A, H)
    true_r = features @ true_w if true_w is not None else None
    if true_r is None:
        notes.append("no true_weights in the MDP file: correlations are null.")

    obs_mat = features if args.obs == "features" else np.eye(S)
    dtype = np.float64 if args.dtype == "float64" else np.float32
    obs_mat = np.ascontiguousarray(obs_mat, dtype=dtype)
    env = base_envs.TabularModelPOMDP(
        transition_matrix=P,
        observation_matrix=obs_mat,
        reward_matrix=true_r if true_r is not None else np.zeros(S),
        horizon=H,
        initial_state_dist=mdp["initial"],
    )
    reward_net = reward_nets.BasicRewardNet(
        env.observation_space,
        env.action_space,
        use_state=True,
        use_action=False,
        use_next_state=False,
        use_done=False,
        hid_sizes=(),
    )
    if args.dtype == "float64":
        reward_net = reward_net.double()
    n_params = sum(q.numel() for q in reward_net.parameters())

    if args.occupancy == "imitation":
        demonstrations = [
            types.Trajectory(obs=states[i], acts=actions[i], infos=None, terminal=True)
            for i in range(states.shape[0])
        ]
        algo_cls = mce_irl.MCEIRL
        notes.append(
            f"horizon: env.horizon = H = {H}. imitation's soft value iteration plans H "
            "actions with rewards on s_0..s_{H-1} (the benchmark's convention); stock "
            "MCEIRL matches occupancies summed over s_0..s_H (H+1 states): demos passed "
            "as imitation Trajectory objects (H+1 observations each), model occupancy "
            "from mce_occupancy_measures (D has H+1 rows). The s_H term is extra relative "
            "to the max-ent likelihood gradient; consistent, but not the exact MLE."
        )
    else:
        om = np.zeros(S)
        np.add.at(om, states[:, :H].ravel(), 1.0)
        demonstrations = om / states.shape[0]
        algo_cls = AlignedMCEIRL
        notes.append(
            f"horizon: env.horizon = H = {H}; occupancy ALIGNED: demo occupancy from "
            "states[:, :H] passed as an ndarray, model occupancy D[:H].sum(0) "
            "(subclass of MCEIRL differing only there): exact max-ent log-likelihood "
            "gradient for rewards on s_0..s_{H-1}."
        )

    mce = algo_cls(
        demonstrations,
        env,
        reward_net,
        rng,
        optimizer_cls=th.optim.Adam,
        optimizer_kwargs={"lr": args.lr},
        discount=1.0,
        linf_eps=args.linf_eps,
        grad_l2_eps=args.grad_l2_eps,
        log_interval=None,  # stats are recorded below for every iteration instead
    )
    obs_t = th.as_tensor(obs_mat, dtype=reward_net.dtype)

    def state_reward() -> np.ndarray:
        with th.no_grad():
            return (
                mce_irl.squeeze_r(reward_net(obs_t, None, None, None))
                .cpu()
                .numpy()
                .astype(np.float64)
            )

    initial_corr = pearson(state_reward(), true_r) if true_r is not None else None

    rec = dict(
        times=[], correlations=[], record_iters=[], linf_delta=[], grad_norm=[], weight_norm=[]
    )
    state = dict(it=0, excluded=0.0, t0=None)
    orig_step = mce._train_step

    def recorded_step(obs_arg):
        out = orig_step(obs_arg)
        t_now = time.perf_counter()
        state["it"] += 1
        k = state["it"]
        if k % args.record_every == 0 or k == 1 or k >= args.max_iter:
            _, visitations = out
            grad_norm = float(
                th.sqrt(sum((q.grad.double() ** 2).sum() for q in reward_net.parameters()))
            )
            weight_norm = float(
                th.sqrt(sum((q.detach().double() ** 2).sum() for q in reward_net.parameters()))
            )
            rec["record_iters"].append(k)
            rec["times"].append(t_now - state["t0"] - state["excluded"])
            rec["correlations"].append(
                pearson(state_reward(), true_r) if true_r is not None else None
            )
            rec["linf_delta"].append(float(np.max(np.abs(mce.demo_state_om - visitations))))
            rec["grad_norm"].append(grad_norm)
            rec["weight_norm"].append(weight_norm)
        state["excluded"] += time.perf_counter() - t_now
        return out

    mce._train_step = recorded_step

    load_start = os.getloadavg()
    t_setup_end = time.perf_counter()
    cpu_start = time.process_time()
    state["t0"] = t_setup_end
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        mce.train(max_iter=args.max_iter)
    t_end = time.perf_counter()
    cpu_train = time.process_time() - cpu_start
    load_end = os.getloadavg()
    wall = t_end - t_setup_end - state["excluded"]

    iters = state["it"]
    if iters and rec["record_iters"][-1] != iters:  # make sure the last iteration is recorded
        rec["record_iters"].append(iters)
        rec["times"].append(wall)
        rec["correlations"].append(pearson(state_reward(), true_r) if true_r is not None else None)
        rec["linf_delta"].append(None)
        rec["grad_norm"].append(None)
        rec["weight_norm"].append(None)
    final_r = state_reward()
    lin = [m for m in reward_net.modules() if isinstance(m, th.nn.Linear)]
    assert len(lin) == 1, "expected a single linear layer"
    final_weights = lin[0].weight.detach().double().reshape(-1).tolist()
    final_bias = float(lin[0].bias.detach().double().item())
    last_lin = rec["linf_delta"][-1]
    if iters < args.max_iter:
        stop = "converged"
        why = (
            "linf_delta <= linf_eps"
            if last_lin is not None and last_lin <= args.linf_eps
            else "grad_norm <= grad_l2_eps"
        )
    else:
        stop, why = "max_iter", f"reached --max-iter {args.max_iter}"
    notes.append(f"stopped: {stop} ({why}) after {iters} iterations.")
    notes.append(
        "times[i] = seconds since the start of mce.train() after iteration record_iters[i] "
        "(occupancy + Adam step), excluding the time spent on recording; wall_time_s also "
        "includes the final policy computation inside train()."
    )
    notes.append(
        "train_cpu_time_s is this process's CPU time during train() (includes the small "
        "recording overhead); wall_time_s well above it means other processes competed "
        "for the cores (see loadavg_1min_start_end)."
    )
    notes.append(
        f"reward net: BasicRewardNet(hid_sizes=(), use_action=False) on obs={args.obs} "
        f"-> one Linear layer ({n_params} parameters incl. bias), dtype {args.dtype}; "
        f"Adam lr={args.lr}; discount 1; linf_eps={args.linf_eps}, grad_l2_eps={args.grad_l2_eps}."
    )

    result = {
        "times": rec["times"],
        "correlations": rec["correlations"],
        "record_iters": rec["record_iters"],
        "final_state_reward": final_r.tolist(),
        "final_weights": final_weights,
        "final_bias": final_bias,
        "final_correlation": pearson(final_r, true_r) if true_r is not None else None,
        "initial_correlation": initial_corr,
        "iterations": iters,
        "converged": stop == "converged",
        "stop_reason": why,
        "wall_time_s": wall,
        "train_cpu_time_s": cpu_train,
        "loadavg_1min_start_end": [load_start[0], load_end[0]],
        "setup_time_s": t_setup_end - _T_START,
        "import_time_s": _T_IMPORTED - _T_START,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "imitation_version": imitation.__version__,
        "torch_version": th.__version__,
        "numpy_version": np.__version__,
        "torch_threads": th.get_num_threads(),
        "imitation_stats": {
            "linf_delta": rec["linf_delta"],
            "grad_norm": rec["grad_norm"],
            "weight_norm": rec["weight_norm"],
        },
        "config": {
            "mdp": os.path.abspath(args.mdp),
            "demos": os.path.abspath(args.demos),
            "max_iter": args.max_iter,
            "lr": args.lr,
            "seed": args.seed,
            "linf_eps": args.linf_eps,
            "grad_l2_eps": args.grad_l2_eps,
            "occupancy": args.occupancy,
            "obs": args.obs,
            "dtype": args.dtype,
            "record_every": args.record_every,
            "n_states": S,
            "n_actions": A,
            "n_features": features.shape[1],
            "horizon": H,
            "n_demos": int(states.shape[0]),
        },
        "notes": notes,
    }
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1, allow_nan=True)
    os.replace(tmp, args.out)
    fc = result["final_correlation"]
    print(
        f"run_mce: S={S} H={H} n={states.shape[0]} iters={iters} ({stop}) "
        f"train {wall:.2f}s setup {result['setup_time_s']:.2f}s "
        f"corr {fc if fc is None else round(fc, 4)} rss {result['peak_rss_mb']:.0f}MB",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
