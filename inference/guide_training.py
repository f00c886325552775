r"""Training the guide policy (the importance proposal q) against a given reward.

The guide policy has its own torch optimiser and objective, separate from the Pyro guide
over theta (see DESIGN.md). For step rewards r and log-weights
log w(x) = R(x) + log b(x) - log q(x), x ~ q:

* ``"reverse_kl"`` (entropy-regularised RL, as in guided cost learning): maximise the
  evidence lower bound E_q[log w] = log Z - KL(q || P). The score-function (REINFORCE)
  gradient with a batch-mean baseline,

      grad E_q[log w] ~= (1/K) sum_k (log w_k - mean_j log w_j) grad log q(x_k),

  needs only sampled trajectories, so it works with black-box simulators.
* ``"forward_kl"`` (self-normalised importance weights, adaptive IS / cross-entropy
  method): minimise KL(P || q) with the gradient -sum_k wbar_k grad log q(x_k),
  wbar = softmax(log w). Mass-covering, which is what an importance proposal wants, but
  noisy while q is far from P.
* ``"soft_backup"``: the exact optimum by one backward recursion (known dynamics only):
  the global soft values for :class:`~bayes_irl.inference.normalizers.importance.TwistedProposal`
  (then q = P), the maximum causal entropy policy for
  :class:`~bayes_irl.inference.normalizers.importance.PolicyProposal`.

:class:`GuidePolicyTrainer` wraps one proposal and one optimiser (its state persists
across calls) and is also the SVI callback: passed as
``run_svi(model, data, callback=trainer)``, every ``every`` SVI steps it reads the
current reward from the Pyro guide (its median, or a draw), trains the guide policy for
``num_steps`` steps and refreshes the normaliser's bank.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from bayes_irl.inference.normalizers.importance import (
    Proposal,
    _check_positive_int,
    _make_generator,
    bank_diagnostics,
    check_step_rewards,
    trajectory_returns,
)

__all__ = ["GuidePolicyTrainer", "GuideTrainingLog", "guide_objective"]

Method = Literal["reverse_kl", "forward_kl", "soft_backup"]
_METHODS = ("reverse_kl", "forward_kl", "soft_backup")


def guide_objective(
    proposal: Proposal,
    step_rewards: torch.Tensor,
    *,
    method: Method = "reverse_kl",
    num_samples: int = 256,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return a surrogate loss (to minimise) and the ELBO estimate for one batch.

    Args:
        proposal: the trainable proposal.
        step_rewards: ``r[s, a]``, shape (S, A) (detached inside).
        method: ``"reverse_kl"`` or ``"forward_kl"`` (see module docstring).
        num_samples: trajectories drawn from q for the estimate.
        generator: torch generator for the draws.

    Returns:
        ``(loss, elbo)``, both scalars: ``loss`` carries the gradient estimate of the
        chosen objective; ``elbo`` = mean_k log w_k (detached), a lower bound on log Z in
        expectation.
    """
    if method not in ("reverse_kl", "forward_kl"):
        raise ValueError(f"method must be 'reverse_kl' or 'forward_kl' here; got {method!r}")
    trajectories, _ = proposal.sample(num_samples, generator=generator)
    correction = proposal.log_correction(trajectories)  # log b - log q, grad in q's params
    log_w = trajectory_returns(step_rewards.detach(), trajectories) + correction.detach()
    if method == "reverse_kl":
        # grad log q = -grad correction; score-function estimator with a mean baseline
        advantage = log_w - log_w.mean()
        loss = (advantage * correction).mean()
    else:
        weights = torch.softmax(log_w, dim=-1)
        loss = (weights * correction).sum()
    return loss, log_w.mean()


@dataclass
class GuideTrainingLog:
    """History of a :class:`GuidePolicyTrainer`.

    Attributes:
        elbo: ELBO estimate mean_k log w_k per training step (list of floats).
        svi_steps: SVI steps at which the callback trained the guide policy.
        khat: PSIS k-hat of the refreshed bank at the trained-on reward, per update.
        ess: ESS of the refreshed bank at the trained-on reward, per update.
        log_z: log Z_hat at the trained-on reward after each update.
    """

    elbo: list[float] = field(default_factory=list)
    svi_steps: list[int] = field(default_factory=list)
    khat: list[float] = field(default_factory=list)
    ess: list[float] = field(default_factory=list)
    log_z: list[float] = field(default_factory=list)


class GuidePolicyTrainer:
    """Train an importance normaliser's guide policy; also an SVI callback.

    Args:
        normalizer: an importance or SMC normaliser with a trainable ``proposal`` and
            ``refresh(step_rewards=None)``.
        method: ``"reverse_kl"`` (REINFORCE), ``"forward_kl"`` (self-normalised weights)
            or ``"soft_backup"`` (exact, known dynamics).
        num_steps: optimiser steps per :meth:`train` call / per callback update.
        num_samples: trajectories per optimiser step.
        learning_rate: Adam step size of the guide policy's own optimiser.
        every: the callback trains every ``every`` SVI steps (step 0 included).
        model: the Pyro model (needed by the callback: its ``reward_model`` maps theta to
            step rewards).
        data: the model's data (raw or prepared), needed to call the Pyro guide.
        reward: ``"median"`` (the Pyro guide's median theta) or ``"sample"`` (one draw).
        seed: seeds the trainer's own generator.
        optimizer: optional factory ``params -> torch.optim.Optimizer`` (default Adam).

    Raises:
        ValueError: for unknown ``method`` / ``reward`` or non-positive counts.

    Example:
        >>> from bayes_irl import GridWorld
        >>> from bayes_irl.inference import ImportanceNormalizer, TwistedProposal
        >>> world = GridWorld.create(size=3, horizon=4, seed=0)
        >>> norm = ImportanceNormalizer(world.mdp, TwistedProposal(world.mdp), num_samples=64)
        >>> trainer = GuidePolicyTrainer(norm, num_steps=5, num_samples=32)
        >>> len(trainer.train(world.true_step_rewards()))
        5
    """

    def __init__(
        self,
        normalizer,
        *,
        method: Method = "reverse_kl",
        num_steps: int = 20,
        num_samples: int = 256,
        learning_rate: float = 0.1,
        every: int = 50,
        model=None,
        data=None,
        reward: Literal["median", "sample"] = "median",
        seed: int = 0,
        optimizer: Callable | None = None,
    ) -> None:
        if not isinstance(getattr(normalizer, "proposal", None), Proposal):
            raise ValueError(
                "normalizer must have a trainable .proposal (ImportanceNormalizer or "
                f"SMCNormalizer); got {type(normalizer).__name__}"
            )
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}; got {method!r}")
        if reward not in ("median", "sample"):
            raise ValueError(f"reward must be 'median' or 'sample'; got {reward!r}")
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0; got {learning_rate!r}")
        self.normalizer = normalizer
        self.proposal: Proposal = normalizer.proposal
        self.method = method
        self.num_steps = _check_positive_int(num_steps, "num_steps")
        self.num_samples = _check_positive_int(num_samples, "num_samples", minimum=2)
        self.every = _check_positive_int(every, "every")
        self.reward = reward
        self.model = model
        self.data = None if data is None or model is None else model.prepare_data(data)
        self.generator = _make_generator(None, seed, normalizer.mdp.device)
        params = [p for p in self.proposal.parameters() if p.requires_grad]
        if optimizer is None:
            self.optimizer = torch.optim.Adam(params, lr=learning_rate)
        else:
            self.optimizer = optimizer(params)
        self.log = GuideTrainingLog()

    def train(self, step_rewards: torch.Tensor, num_steps: int | None = None) -> np.ndarray:
        """Train the proposal against ``step_rewards`` (S, A); returns the ELBO per step.

        Does not refresh the normaliser (see :meth:`update`).
        """
        step_rewards = check_step_rewards(self.normalizer.mdp, step_rewards).detach()
        if step_rewards.dim() != 2:
            raise ValueError(
                f"step_rewards must have shape (S, A) for training; got {tuple(step_rewards.shape)}"
            )
        num_steps = self.num_steps if num_steps is None else _check_positive_int(
            num_steps, "num_steps"
        )
        if self.method == "soft_backup":
            self.proposal.soft_backup_(step_rewards)
            with torch.no_grad():
                x, corr = self.proposal.sample(self.num_samples, generator=self.generator)
                elbo = float((trajectory_returns(step_rewards, x) + corr).mean())
            self.log.elbo.append(elbo)
            return np.asarray([elbo])
        elbos = np.empty(num_steps)
        for i in range(num_steps):
            self.optimizer.zero_grad()
            loss, elbo = guide_objective(
                self.proposal, step_rewards, method=self.method,
                num_samples=self.num_samples, generator=self.generator,
            )
            loss.backward()
            self.optimizer.step()
            elbos[i] = float(elbo)
        self.log.elbo.extend(elbos.tolist())
        return elbos

    def update(self, step_rewards: torch.Tensor, num_steps: int | None = None) -> None:
        """Train against ``step_rewards`` (S, A), refresh the bank and log its diagnostics."""
        self.train(step_rewards, num_steps)
        self.normalizer.refresh(step_rewards.detach())
        with torch.no_grad():
            log_w = self.normalizer.log_weights(step_rewards.detach())
        diag = bank_diagnostics(log_w)
        self.log.khat.append(diag.khat)
        self.log.ess.append(diag.ess)
        self.log.log_z.append(diag.log_z)

    def current_rewards(self, guide) -> torch.Tensor:
        """Step rewards (S, A) at the Pyro guide's median theta (or one draw)."""
        if self.model is None or self.data is None:
            raise ValueError("the SVI callback needs model= and data= (to evaluate the guide)")
        site = self.model.reward_model.site_name
        with torch.no_grad():
            if self.reward == "median":
                theta = guide.median(self.data)[site]
            else:
                theta = guide(self.data)[site]
            return self.model.reward_model.step_rewards(theta.detach()).detach()

    def __call__(self, step: int, loss: float, guide) -> None:
        """SVI callback ``callback(step, loss, guide)``: update every ``every`` steps."""
        if step % self.every:
            return
        self.update(self.current_rewards(guide))
        self.log.svi_steps.append(int(step))

    def __repr__(self) -> str:
        return (
            f"GuidePolicyTrainer(method={self.method!r}, num_steps={self.num_steps}, "
            f"num_samples={self.num_samples}, every={self.every})"
        )

