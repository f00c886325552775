r"""Simulated teachers with B-Pref's failure modes, for tests and benchmarks.

A perfectly Boltzmann-rational judge (:func:`bayes_irl.models.simulate_comparisons`) is
the preference model itself; real people are not. B-Pref (Lee, Smith, Dragan & Abbeel
2021, "B-Pref: Benchmarking Preference-Based Reinforcement Learning", Sec. 4) defines the
standard stressed teachers, reproduced here for a pair of trajectories (x^0, x^1) with
true step rewards r_t = r_theta*(s_t, a_t) and lengths L^0, L^1:

* **skip** (``skip_threshold`` delta_skip): the query is skipped when
  max(R(x^0), R(x^1)) < delta_skip, R the undiscounted return;
* **equal** (``equal_threshold`` delta_equal): |R(x^0) - R(x^1)| < delta_equal answers
  "equally preferable", a tie (outcome 0.5);
* **myopia** (``gamma``): the judge weighs step t of an item of length L by
  gamma^{L - 1 - t} (recent steps count most), R^gamma(x) = sum_t gamma^{L-1-t} r_t;
* **rationality** (``beta``): P(x^0 preferred) = sigma(beta (R^gamma(x^0) - R^gamma(x^1)));
  ``beta = inf`` is the perfectly rational (deterministic) teacher;
* **mistakes** (``mistake_rate`` epsilon): the answer is flipped with probability epsilon.

The order follows B-Pref's reference implementation: skip, then the stochastic/rational
label, then mistakes, then "equal" overrides the label.
"""

from __future__ import annotations

import math

import torch

from bayes_irl.models.choice import TIE
from bayes_irl.models.preference_data import as_trajectories
from bayes_irl.rewards import RewardModel

__all__ = ["BPrefTeacher"]


class BPrefTeacher:
    """A B-Pref simulated teacher answering pairwise queries with the true reward.

    Args:
        reward_model: a tabular :class:`bayes_irl.RewardModel` (``step_rewards``).
        true_weights: theta*, shape (D,).
        beta: rationality beta > 0, or ``math.inf`` for a perfectly rational teacher.
        gamma: myopia discount in (0, 1] (1 = not myopic).
        mistake_rate: probability epsilon in [0, 1) of flipping an answer.
        skip_threshold: delta_skip (a return); None never skips.
        equal_threshold: delta_equal >= 0 (a return difference); 0 never answers "equal".
        seed: seeds the teacher's private generator.

    Example:
        >>> from bayes_irl import GridWorld
        >>> world = GridWorld.create(size=3, horizon=4, seed=0)
        >>> items = world.sample_demonstrations(4, seed=1).as_tensor()
        >>> teacher = BPrefTeacher(world.reward_model, world.true_weights, beta=1.0,
        ...                        mistake_rate=0.1, gamma=0.9, seed=0)
        >>> teacher.label(items[:2], items[2:]).shape
        torch.Size([2])
    """

    def __init__(
        self,
        reward_model: RewardModel,
        true_weights,
        *,
        beta: float = 1.0,
        gamma: float = 1.0,
        mistake_rate: float = 0.0,
        skip_threshold: float | None = None,
        equal_threshold: float = 0.0,
        seed: int = 0,
    ) -> None:
        if not callable(getattr(reward_model, "step_rewards", None)):
            raise ValueError("reward_model must be a tabular reward with step_rewards")
        weights = torch.as_tensor(true_weights, dtype=torch.float64)
        if weights.shape != (reward_model.num_params,):
            raise ValueError(
                f"true_weights must have shape ({reward_model.num_params},); got "
                f"{tuple(weights.shape)}"
            )
        if torch.isnan(weights).any():
            raise ValueError("true_weights contain NaN")
        if not (beta > 0 and not math.isnan(beta)):
            raise ValueError(f"beta must be > 0 (math.inf: perfectly rational); got {beta!r}")
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma must lie in (0, 1]; got {gamma!r}")
        if not 0 <= mistake_rate < 1:
            raise ValueError(f"mistake_rate must lie in [0, 1); got {mistake_rate!r}")
        if not (equal_threshold >= 0 and math.isfinite(equal_threshold)):
            raise ValueError(
                f"equal_threshold must be a finite float >= 0; got {equal_threshold!r}"
            )
        if skip_threshold is not None and not math.isfinite(skip_threshold):
            raise ValueError(f"skip_threshold must be finite or None; got {skip_threshold!r}")
        self.step_rewards = reward_model.step_rewards(weights).detach()  # (S, A)
        self.beta, self.gamma, self.mistake_rate = float(beta), float(gamma), float(mistake_rate)
        self.skip_threshold, self.equal_threshold = skip_threshold, float(equal_threshold)
        self.generator = torch.Generator().manual_seed(seed)

    def returns(self, items, *, myopic: bool = False) -> torch.Tensor:
        """Return R(x) (or the myopic R^gamma(x)) of trajectories (n, T + 1, 2), shape (n,)."""
        items = as_trajectories(items, "items", None)
        states, actions = items[:, :-1, 0], items[:, :-1, 1]
        observed = actions >= 0
        step = self.step_rewards[states.clamp(min=0), actions.clamp(min=0)]
        step = torch.where(observed, step, torch.zeros_like(step))
        if myopic and self.gamma < 1:
            lengths = observed.sum(-1, keepdim=True)
            t = torch.arange(step.shape[-1])
            power = (lengths - 1 - t).clamp(min=0).to(step.dtype)
            step = step * self.gamma**power
        return step.sum(-1)

    def label(self, first, second) -> torch.Tensor:
        """Answer n queries: outcomes 1.0 (first), 0.0 (second), 0.5 (equal) or NaN (skip).

        Args:
            first: trajectories (n, T + 1, 2) or a TrajectoryBatch.
            second: the other item of each query, same form.

        Returns:
            float64 (n,).
        """
        plain = torch.stack([self.returns(first), self.returns(second)])  # (2, n)
        myopic = torch.stack([self.returns(first, myopic=True),
                              self.returns(second, myopic=True)])
        if plain.shape[1] == 0 or plain[0].shape != plain[1].shape:
            raise ValueError("first and second must hold the same number n >= 1 of items")
        delta = myopic[0] - myopic[1]
        if math.isinf(self.beta):
            labels = (delta > 0).to(torch.float64)
            ties = delta == 0  # a rational teacher facing equal returns flips a coin
            coin = torch.rand(delta.shape, generator=self.generator, dtype=torch.float64)
            labels = torch.where(ties, (coin < 0.5).to(torch.float64), labels)
        else:
            p_first = torch.sigmoid(self.beta * delta)
            labels = (torch.rand(delta.shape, generator=self.generator, dtype=torch.float64)
                      < p_first).to(torch.float64)
        mistakes = torch.rand(delta.shape, generator=self.generator,
                              dtype=torch.float64) < self.mistake_rate
        labels = torch.where(mistakes, 1.0 - labels, labels)
        equal = (plain[0] - plain[1]).abs() < self.equal_threshold
        labels = torch.where(equal, torch.full_like(labels, TIE), labels)
        if self.skip_threshold is not None:
            skipped = plain.max(0).values < self.skip_threshold
            labels = torch.where(skipped, torch.full_like(labels, math.nan), labels)
        return labels

    def answer(self, first, second) -> float | None:
        """Answer one query (two trajectories (T + 1, 2)): 1.0, 0.0, 0.5, or None = skip."""
        first, second = torch.as_tensor(first), torch.as_tensor(second)
        outcome = float(self.label(first.unsqueeze(0), second.unsqueeze(0))[0])
        return None if math.isnan(outcome) else outcome

    def __repr__(self) -> str:
        return (f"BPrefTeacher(beta={self.beta}, gamma={self.gamma}, "
                f"mistake_rate={self.mistake_rate}, skip_threshold={self.skip_threshold}, "
                f"equal_threshold={self.equal_threshold})")
