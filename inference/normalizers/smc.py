r"""Sequential Monte Carlo normaliser: resampling across time steps.

Intermediate targets on partial trajectories x_{0:t} (twisted by optional potentials
psi[t, s], with psi_T = 0 so that gamma_T is the maxent target):

    gamma_t(x_{0:t}) = p0(s_0) prod_{u<t} [beta(a_u|s_u) p(s_{u+1}|s_u,a_u) exp r(s_u,a_u)]
                       * exp psi_t(s_t).

K particles start from the proposal's q_0 and move with its kernel q_t(a_t, s_{t+1} | s_t)
(:meth:`bayes_irl.inference.normalizers.tabular_proposals.Proposal.step`: a guide policy on
the true dynamics or a simulator, or the twisted kernel). The incremental log-weight is

    log G_t = r(s_t, a_t) + [log beta + log p - log q_t](a_t, s_{t+1} | s_t)
              + psi_{t+1}(s_{t+1}) - psi_t(s_t),

only sampled quantities enter it, so a simulator is enough. When the ESS of the current
weights drops below ``ess_threshold * K`` the particles are resampled (multinomial) and
the running estimate gains log mean_k exp(logW_k) (Del Moral 2004; Doucet & Johansen
2009, eq. 31); the final term is added at T. Z_hat_SMC is unbiased for Z.

As a normaliser for other rewards theta the final weighted particle system
{x_k, Wbar_k} (complete ancestral paths) at the reference reward r_ref is reweighted:

    Z_hat(theta) = Z_hat_ref * sum_k Wbar_k exp(R_theta(x_k) - R_ref(x_k)),

which is again unbiased (E[Z_hat_ref sum_k Wbar_k f(x_k)] = gamma_T(f)) and differentiable
with fixed particles. The normaliser resamples once more at T (multinomial, unbiased), so
its bank holds K equally weighted paths and the bank machinery of
:class:`TrajectoryBankNormalizer` applies with offsets c_k = log Z_hat_ref - R_ref(x_k).

Diagnostics of a resampled bank. The k-hat and ESS of the bank's reweighting alone see
K equally weighted (duplicated) paths and say nothing about the sweep. So the sweep is
diagnosed from its own weights (:attr:`SMCNormalizer.sweep_diagnostics`): the
Lee-Whiteley relative variance V of Z_hat from the genealogy (time-0 ancestors), its
equivalent ESS 1 / (V + 1/K) and standard error sqrt(V) of log Z_hat, PSIS k-hat of the
weights at every resampling decision and at T (the worst; informative only: duplicated
particles put ties into the tail, where the Pareto fit can read inf even for a good
sweep, and small spaces repeat paths naturally), and the conditional ESS of every step
from the incremental weights (``conditional_ess_history``). At a theta the reported
``diagnostics`` combine the sweep with the reweighting: relative variances add,
V(theta) = V_sweep + (1 / ESS_reweight - 1 / K), the ESS is 1 / (V(theta) + 1/K) and k-hat
is the reweighting's; ``khat_policy`` acts on k-hat > 0.7 or an ESS below
min(:data:`MIN_SWEEP_ESS`, K / 10): a sweep can be off by a nat while every k-hat reads
below 0.7.
The reference reward is updated by ``refresh(reward, theta)`` (e.g. by
:class:`bayes_irl.inference.guide_policy_training.GuidePolicyTrainer`, which refreshes after
training).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from bayes_irl.inference.diagnostics import (
    ImportanceDiagnostics,
    conditional_ess,
    effective_sample_size,
    importance_diagnostics,
    smc_relative_variance,
)
from bayes_irl.inference.normalizers.importance import (
    KhatPolicy,
    TrajectoryBankNormalizer,
    check_theta,
    make_generator,
)
from bayes_irl.inference.normalizers.tabular_proposals import (
    Proposal,
    TwistedProposal,
    check_step_rewards,
)
from bayes_irl.trajectories import trajectory_returns
from bayes_irl.validation import positive_int

__all__ = ["MIN_SWEEP_ESS", "SMCNormalizer", "smc_log_normalizer"]

MIN_SWEEP_ESS = 100.0
"""Below this equivalent ESS of the sweep (1 / (V + 1/K); K / 10 for K < 1000)
``khat_policy`` acts as on k-hat."""


def smc_log_normalizer(
    proposal: Proposal,
    step_rewards: torch.Tensor,
    num_particles: int,
    *,
    twist: torch.Tensor | None = None,
    ess_threshold: float = 0.5,
    generator: torch.Generator | None = None,
    history: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[float]]:
    """Run one SMC sweep at ``step_rewards`` (S, A).

    Args:
        proposal: the per-step kernel (any :class:`Proposal`).
        step_rewards: ``r[s, a]``, shape (S, A).
        num_particles: K >= 2.
        twist: optional psi of shape (T + 1, S); ``psi[T]`` is ignored (taken as 0).
        ess_threshold: resample when ESS < ess_threshold * K; in [0, 1] (0: never, which is
            plain importance sampling; 1: every step).
        generator: torch generator.
        history: optional dict, filled with ``"eves"`` (int (K,), the time-0 ancestor of
            each final particle), ``"conditional_ess"`` (T floats, one per step),
            ``"khat"`` (PSIS k-hat of the weights at each resampling and at T; duplicated
            particles put ties in the tail, where it can read inf) and
            ``"num_resamples"``.

    Returns:
        ``(log_z, trajectories, log_weights, ess_history)``: the scalar log Z_hat, the
        final particles' full ancestral paths (K, T + 1, 2), their final unnormalised
        log-weights (K,) and the ESS of the weights before each resampling decision
        (t = 1..T-1) and at the end (T entries in all).
    """
    mdp = proposal.mdp
    step_rewards = check_step_rewards(mdp, step_rewards).detach()
    if step_rewards.dim() != 2:
        raise ValueError(f"step_rewards must have shape (S, A); got {tuple(step_rewards.shape)}")
    k = positive_int(num_particles, "num_particles", minimum=2)
    if not 0 <= float(ess_threshold) <= 1:
        raise ValueError(f"ess_threshold must lie in [0, 1]; got {ess_threshold!r}")
    horizon = mdp.horizon
    psi = torch.zeros(horizon + 1, mdp.num_states, dtype=mdp.dtype, device=mdp.device)
    if twist is not None:
        if twist.shape != psi.shape:
            raise ValueError(
                f"twist must have shape (T + 1, S) = {tuple(psi.shape)}; got {tuple(twist.shape)}"
            )
        psi[:horizon] = twist.detach()[:horizon]
    log_k = math.log(k)
    ess_history: list[float] = []
    cess: list[float] = []
    khats: list[float] = []
    eves = torch.arange(k, device=mdp.device)
    num_resamples = 0
    with torch.no_grad():
        state, log_w = proposal.initial(k, generator=generator)
        log_w = log_w + psi[0][state]
        log_z = torch.zeros((), dtype=mdp.dtype, device=mdp.device)
        states = torch.empty(k, horizon + 1, dtype=torch.int64, device=mdp.device)
        actions = torch.full((k, horizon + 1), -1, dtype=torch.int64, device=mdp.device)
        states[:, 0] = state
        for t in range(horizon):
            if t > 0:
                w = torch.softmax(log_w, -1)
                ess_history.append(float(effective_sample_size(log_w)))
                if ess_history[-1] < ess_threshold * k:
                    if history is not None:
                        khats.append(importance_diagnostics(log_w).khat)
                    log_z = log_z + torch.logsumexp(log_w, -1) - log_k
                    index = torch.multinomial(w, k, replacement=True, generator=generator)
                    states, actions, state = states[index], actions[index], state[index]
                    eves = eves[index]
                    log_w = torch.zeros_like(log_w)
                    num_resamples += 1
            action, next_state, lw = proposal.step(t, state, generator=generator)
            increment = step_rewards[state, action] + lw + psi[t + 1][next_state] - psi[t][state]
            if history is not None:
                cess.append(conditional_ess(log_w, increment))
            log_w = log_w + increment
            actions[:, t] = action
            states[:, t + 1] = next_state
            state = next_state
        log_z = log_z + torch.logsumexp(log_w, -1) - log_k
        ess_history.append(float(effective_sample_size(log_w)))
    if history is not None:
        khats.append(importance_diagnostics(log_w).khat)
        history.update(eves=eves, conditional_ess=cess, khat=khats,
                       num_resamples=num_resamples)
    trajectories = torch.stack([states, actions], dim=-1)
    return log_z, trajectories, log_w, ess_history


class SMCNormalizer(TrajectoryBankNormalizer):
    """Sequential Monte Carlo estimate of log Z (see the module docstring).

    Args:
        proposal: the per-step kernel: a :class:`PolicyProposal` (true dynamics or a
            simulator) or a :class:`TwistedProposal`; its ``mdp`` is the space.
        num_particles: K >= 2.
        reward: reward model of the reference sweep (with ``theta``); default: zero rewards.
        theta: reference parameters ``(D,)`` of ``reward``.
        twist: ``"proposal"`` (default: the proposal's ``twist`` if it has one, else none),
            ``None`` (no twist), or a tensor psi of shape (T + 1, S).
        ess_threshold: resampling threshold in [0, 1].
        kind: ``"global"`` only.
        khat_policy: ``"warn"``, ``"raise"`` or ``"ignore"`` (see ImportanceNormalizer).
        seed: seeds the private generator (default 0) unless ``generator`` is given.
        generator: a torch.Generator.

    Attributes:
        reference_log_z: log Z_hat_SMC of the last sweep (float).
        num_resamples: intermediate resampling steps in the last sweep.
        ess_history: ESS before each resampling decision and at the end (T floats).
        conditional_ess_history: conditional ESS of every step (T floats).
        sweep_diagnostics: :class:`~bayes_irl.inference.diagnostics.ImportanceDiagnostics` of the
            sweep at the reference reward: ESS 1 / (V + 1/K) from the Lee-Whiteley
            variance V, the worst PSIS k-hat, log Z_hat and its standard error sqrt(V).
        num_eves: distinct time-0 ancestors of the final particles.
        num_unique_paths: distinct full paths in the bank (path degeneracy).

    Raises:
        ValueError: for a bad proposal, ``num_particles``, ``ess_threshold`` or ``twist``.

    Example:
        >>> from bayes_irl import GridWorld
        >>> from bayes_irl.inference import PolicyProposal
        >>> world = GridWorld.create(size=3, horizon=4, seed=0)
        >>> reward, theta = world.reward_model, world.true_weights
        >>> norm = SMCNormalizer(PolicyProposal(world.mdp), num_particles=64)
        >>> norm.refresh(reward, theta).log_normalizer(reward, theta).shape
        torch.Size([])
    """

    def __init__(
        self,
        proposal: Proposal,
        *,
        num_particles: int = 1000,
        reward: Any = None,
        theta: torch.Tensor | None = None,
        twist="proposal",
        ess_threshold: float = 0.5,
        kind: str = "global",
        khat_policy: KhatPolicy = "warn",
        seed: int | None = None,
        generator: torch.Generator | None = None,
        num_observations: int | None = None,
    ) -> None:
        if not isinstance(proposal, Proposal):
            raise ValueError(
                "proposal must be a tabular Proposal (PolicyProposal or TwistedProposal); got "
                f"{type(proposal).__name__}"
            )
        super().__init__(
            proposal.mdp, kind=kind, khat_policy=khat_policy, num_observations=num_observations
        )
        self.num_particles = positive_int(num_particles, "num_particles", minimum=2)
        if not 0 <= float(ess_threshold) <= 1:
            raise ValueError(f"ess_threshold must lie in [0, 1]; got {ess_threshold!r}")
        self.ess_threshold = float(ess_threshold)
        if not (twist is None or torch.is_tensor(twist) or twist == "proposal"):
            raise ValueError(
                f"twist must be 'proposal', None or a (T + 1, S) tensor; got {twist!r}"
            )
        if (reward is None) != (theta is None):
            raise ValueError("reward and theta must be given together (or neither)")
        self.proposal = proposal
        self.twist = twist
        self.generator = make_generator(generator, seed, proposal.mdp.device)
        self.reference_log_z = math.nan
        self.num_resamples = 0
        self._reference: tuple[Any, torch.Tensor] | None = None
        self.refresh(reward, theta)

    def _twist_tensor(self) -> torch.Tensor | None:
        if self.twist is None:
            return None
        if isinstance(self.twist, str):
            return self.proposal.twist if isinstance(self.proposal, TwistedProposal) else None
        return self.twist

    def refresh(self, reward: Any = None, theta: torch.Tensor | None = None) -> SMCNormalizer:
        """Run a new sweep at ``reward``'s ``theta`` (D,) (default: the last reference).

        ``theta`` alone keeps the last reward model. Returns ``self``.

        Raises:
            ValueError: for a ``theta`` that is not one parameter vector (D,).
        """
        mdp = self.mdp
        if theta is None:
            reference = self._reference
        else:
            reward = reward if reward is not None else (self._reference or (None,))[0]
            theta = check_theta(reward, theta).detach()
            if theta.dim() != 1:
                raise ValueError(
                    f"theta must have shape (D,) = ({theta.shape[-1]},) for an SMC sweep; got "
                    f"{tuple(theta.shape)}"
                )
            reference = (reward, theta)
        if reference is None:
            step_rewards = torch.zeros(
                mdp.num_states, mdp.num_actions, dtype=mdp.dtype, device=mdp.device
            )
        else:
            step_rewards = reference[0].step_rewards(reference[1]).detach()
        step_rewards = check_step_rewards(mdp, step_rewards)
        history: dict = {}
        log_z, trajectories, log_w, ess_history = smc_log_normalizer(
            self.proposal, step_rewards, self.num_particles, twist=self._twist_tensor(),
            ess_threshold=self.ess_threshold, generator=self.generator, history=history,
        )
        k = self.num_particles
        variance = smc_relative_variance(log_w, history["eves"], history["num_resamples"])
        khats = [x for x in history["khat"] if not math.isnan(x)]
        self.sweep_diagnostics = ImportanceDiagnostics(
            num_samples=k,
            ess=1.0 / (max(variance, 0.0) + 1.0 / k),
            khat=max(khats) if khats else math.nan,
            log_z=float(log_z),
            log_z_std_error=math.sqrt(max(variance, 0.0)),
            num_observations=self.num_observations,
        )
        self.conditional_ess_history = history["conditional_ess"]
        self.num_eves = int(torch.unique(history["eves"]).numel())
        # Final multinomial resampling: the bank is K equally weighted particles of P_ref.
        index = torch.multinomial(
            torch.softmax(log_w, -1), self.num_particles, replacement=True,
            generator=self.generator,
        )
        trajectories = trajectories[index]
        self._reference = reference
        states, actions = mdp.split(trajectories)
        offsets = log_z - trajectory_returns(step_rewards, states, actions)
        self._set_bank(trajectories, offsets)
        self.reference_log_z = float(log_z)
        self.ess_history = ess_history
        self.num_resamples = sum(
            e < self.ess_threshold * self.num_particles for e in ess_history[:-1]
        )
        self.num_unique_paths = int(torch.unique(trajectories, dim=0).shape[0])
        return self

    def _too_few_effective(self, diag: ImportanceDiagnostics) -> bool:
        """ESS below min(100, K / 10) (Vehtari et al.'s minimum, relaxed for small K)."""
        return diag.ess < min(MIN_SWEEP_ESS, 0.1 * self.num_particles)

    def _compute_diagnostics(self, log_w: torch.Tensor) -> ImportanceDiagnostics:
        """The sweep's diagnostics combined with the reweighting to theta (module docstring)."""
        reweight = importance_diagnostics(log_w)
        sweep = self.sweep_diagnostics
        k = self.num_particles
        variance = sweep.log_z_std_error**2 + max(1.0 / reweight.ess - 1.0 / k, 0.0)
        return ImportanceDiagnostics(
            num_samples=k,
            ess=1.0 / (variance + 1.0 / k),
            khat=reweight.khat,
            log_z=reweight.log_z,
            log_z_std_error=math.sqrt(variance),
            num_observations=self.num_observations,
        )

    def __repr__(self) -> str:
        return (
            f"SMCNormalizer(K={self.num_particles}, proposal={type(self.proposal).__name__}, "
            f"ess_threshold={self.ess_threshold}, mdp={self.mdp!r})"
        )
