"""``bayes-irl ask``: a person judges pairs of trajectories in the terminal, one key each.

Both trajectories are drawn side by side on the grid (each visited cell shows the time
step of its first visit, 0 = start; the full paths follow as (row, col) cells). Keys:
``l`` left is better, ``r`` right is better, ``t`` tie, ``s`` skip, ``q`` quit (Ctrl-C
also quits). Every answer is appended to ``--answers`` (JSON lines) the moment it is
given; rerunning the same command resumes after the last answer. The next pair is the
one of largest expected information gain under the current posterior (``--strategy
random`` for comparison); the session stops after ``--budget`` queries or once the
posterior entropy falls to ``--min-entropy``. The session logic lives in
:mod:`bayes_irl.inference.collection`; this module only reads keys and prints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

KEYS = {"l": "left", "r": "right", "t": "tie", "s": "skip"}
QUIT_KEYS = ("q", "\x03", "\x04")  # q, Ctrl-C, Ctrl-D
PROMPT = "[l]eft  [r]ight  [t]ie  [s]kip  [q]uit > "


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``ask`` on the CLI's subparsers."""
    p = subparsers.add_parser("ask", help="judge pairs of trajectories; answers go to a file")
    p.add_argument("--answers", type=Path, required=True,
                   help=".jsonl answer file: appended to, resumed if it exists")
    p.add_argument("--mdp", type=Path, help="MDP .npz (default: the built-in gridworld)")
    p.add_argument("--items", type=Path,
                   help="trajectories to compare (demonstrations-format .npz; required with "
                        "--mdp; default: --num-items sampled on the built-in gridworld)")
    p.add_argument("--num-items", type=int, default=20)
    p.add_argument("--grid-size", type=int, default=4)
    p.add_argument("--horizon", type=int, default=None, help="default 2N")
    p.add_argument("--strategy", choices=["eig", "random"], default="eig")
    p.add_argument("--budget", type=int, default=20, help="stop after this many queries")
    p.add_argument("--min-entropy", type=float, default=None,
                   help="stop once the posterior entropy (nats) is at most this")
    p.add_argument("--refit-every", type=int, default=1, help="refit after k answers")
    p.add_argument("--seed", type=int, default=0, help="seeds the world, items and queries")
    return p


def _pool(args):
    """Return (mdp, reward model, item trajectories (m, T + 1, 2))."""
    import torch

    from bayes_irl.io import load_demonstrations, load_mdp

    if args.mdp is not None:
        if args.items is None:
            raise ValueError("--items is required with --mdp")
        from bayes_irl.rewards import LinearReward

        mdp, _ = load_mdp(args.mdp)
        items = load_demonstrations(args.items, mdp=mdp).as_tensor()
        return mdp, LinearReward(mdp.features, feature_names=mdp.feature_names), items
    from bayes_irl.gridworld import GridWorld
    from bayes_irl.soft_bellman import sample_maxent_trajectories

    world = GridWorld.create(size=args.grid_size, horizon=args.horizon, seed=args.seed)
    if args.items is not None:
        return world.mdp, world.reward_model, load_demonstrations(args.items,
                                                                  mdp=world.mdp).as_tensor()
    gen = torch.Generator().manual_seed(args.seed)
    rewards = [world.reward_model.step_rewards(
        torch.randn(world.mdp.num_features, generator=gen, dtype=torch.float64))
        for _ in range(args.num_items)]
    items = torch.cat([sample_maxent_trajectories(world.mdp, r, 1, generator=gen)
                       for r in rewards])
    return world.mdp, world.reward_model, items


def _read_key(stream) -> str:
    """One key: unbuffered in a terminal, else the first character of a line."""
    if stream.isatty():
        import termios
        import tty

        fd = stream.fileno()
        saved = termios.tcgetattr(fd)
        try:
            tty.setcbreak(fd)
            # Ctrl-C is read as a key here (ISIG off), not left to SIGINT: a signal that
            # the kernel hands to another thread of the process does not interrupt the
            # main thread's blocking read, and the prompt then hung (seen in the pty test
            # on a loaded machine: no reply to Ctrl-C for 300 s)
            attrs = termios.tcgetattr(fd)
            attrs[3] &= ~termios.ISIG
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
            key = stream.read(1)
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        if key == "\x03":
            raise KeyboardInterrupt
        return key
    line = stream.readline()
    return line[:1] if line else "\x04"


def run(args) -> int:
    """Run the terminal loop; returns the exit status (0 done or quit, 130 interrupted)."""
    import torch

    from bayes_irl.app.trajectory_views import text_pair
    from bayes_irl.inference.collection import CollectionSession
    from bayes_irl.models import PreferenceModel

    torch.set_num_threads(1)
    mdp, reward, items = _pool(args)
    model = PreferenceModel(reward, items, ties="davidson")
    session = CollectionSession(model, args.answers, strategy=args.strategy, budget=args.budget,
                                min_entropy=args.min_entropy, refit_every=args.refit_every,
                                seed=args.seed)
    out = sys.stdout
    if session.num_asked:
        print(f"resuming: {session.num_asked} answers already in {args.answers}", file=out)
    try:
        while (query := session.next_query()) is not None:
            budget = "" if args.budget is None else f"/{args.budget}"
            print(f"\nquery {query.query_id + 1}{budget}: which trajectory is better?", file=out)
            print(text_pair(items[query.first], items[query.second],
                            num_states=mdp.num_states), file=out)
            while True:
                print(PROMPT, end="", flush=True, file=out)
                key = _read_key(sys.stdin).lower()
                if key in QUIT_KEYS:
                    print(f"\nquit; {session.num_asked} answers saved in {args.answers}",
                          file=out)
                    return 0
                if key in KEYS:
                    break
                print(f"\nunknown key {key!r}", file=out)
            session.answer(query, KEYS[key])
            print(KEYS[key], file=out, flush=True)
    except KeyboardInterrupt:
        print(f"\ninterrupted; {session.num_asked} answers saved in {args.answers}", file=out)
        return 130
    mean = ", ".join(f"{v:.3f}" for v in session.posterior_mean().tolist())
    print(f"\ndone ({session.stop_reason()}): {session.num_asked} queries, "
          f"{session.num_answered} answers in {args.answers}", file=out)
    print(f"posterior mean of the reward weights: [{mean}]; entropy "
          f"{session.posterior_entropy():.3f} nats", file=out)
    return 0
