r"""Importance-sampling normalisers: the guide policy as the proposal for log Z.

For a proposal q over trajectories x (the guide policy, :class:`bayes_irl.protocols.
GuidePolicy`) and K draws x_k ~ q (the *bank*, drawn once and reused for every theta until
:meth:`ImportanceNormalizer.refresh`):

    log w_k(theta) = R_theta(x_k) + log b(x_k) - log q(x_k)
    log Z_hat(theta) = logsumexp_k log w_k(theta) - log K.

``R_theta(x_k)`` is ``reward.returns(theta, *space.split(bank))`` and ``log b - log q`` the
proposal's ``log_ratio``. Z_hat is unbiased for Z; log Z_hat is biased low (Jensen). The
bank does not depend on theta, so autograd through log Z_hat gives exactly the
self-normalised gradient

    d log Z_hat / d theta = sum_k wbar_k dR_theta(x_k)/d theta,  wbar_k = w_k / sum_j w_j.

One normaliser, :class:`ImportanceNormalizer`, for every trajectory space; the proposals
(all :class:`torch.nn.Module`, trained by :class:`bayes_irl.inference.guide_policy_training.
GuidePolicyTrainer`) are :class:`PolicyProposal` and :class:`TwistedProposal` (tabular; their
log-weights in :mod:`bayes_irl.inference.normalizers.tabular_proposals`, re-exported here)
and :class:`~bayes_irl.inference.normalizers.simulator_proposal.SimulatorProposal`
(continuous): a Gaussian policy run through a Gymnasium-style simulator; the dynamics
cancel, log b - log q = -sum_t log pi_t(u_t | x_t).

Renames (one API for every proposal): ``SimulatorImportanceNormalizer(simulator, policy,
reward_fn)`` is ``ImportanceNormalizer(SimulatorProposal(simulator, policy))`` (the reward
is an argument of ``log_normalizer(reward, theta)``); ``ImportanceNormalizer(mdp,
proposal)`` is ``ImportanceNormalizer(proposal)`` (the space is ``proposal.space``);
``Proposal.sample`` is :meth:`Proposal.draw`, ``Proposal.log_correction`` is
:meth:`Proposal.log_ratio` (``log_prob = -log_ratio``); ``sample_trajectories`` and the
simulator's ``resample`` are :meth:`TrajectoryBankNormalizer.sample`; ``trajectory_returns``
is :func:`bayes_irl.trajectories.trajectory_returns`.

Normaliser interface (:class:`bayes_irl.protocols.Normalizer`): ``space`` (``mdp`` as
well for tabular proposals), ``is_exact = False``, ``log_normalizer(reward, theta)``,
``diagnostics``, ``sample(reward, theta, sample_shape)`` by sampling-importance-resampling
(used by :class:`bayes_irl.models.MaxEntTrajectory` when no exact sampler exists) and
``refresh()``. PSIS k-hat of the log-weights (Vehtari et al. 2024) above 0.7 triggers an
:class:`ImportanceWarning` (or an :class:`ImportanceSamplingError` with
``khat_policy="raise"``). The bank machinery (:class:`TrajectoryBankNormalizer`) is shared
with :class:`bayes_irl.inference.normalizers.smc.SMCNormalizer`.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import torch

from bayes_irl.inference.diagnostics import (
    KHAT_THRESHOLD,
    MODE_SHIFT_THRESHOLD,
    ImportanceDiagnostics,
    ImportanceWarning,
    importance_diagnostics,
    log_mean_exp,
)
from bayes_irl.inference.normalizers.tabular_proposals import (
    PolicyProposal,
    Proposal,
    Simulator,
    TwistedProposal,
    check_step_rewards,
)
from bayes_irl.mdp import TabularMDP
from bayes_irl.protocols import GuidePolicy
from bayes_irl.validation import positive_int

__all__ = [
    "ImportanceNormalizer",
    "ImportanceSamplingError",
    "ImportanceWarning",
    "PolicyProposal",
    "Proposal",
    "Simulator",
    "TrajectoryBankNormalizer",
    "TwistedProposal",
    "check_step_rewards",
    "draw_returns",
]

KhatPolicy = Literal["warn", "raise", "ignore"]
_KHAT_POLICIES = ("warn", "raise", "ignore")


class ImportanceSamplingError(RuntimeError):
    """Raised instead of :class:`ImportanceWarning` when ``khat_policy="raise"``."""


# ---------------------------------------------------------------------------- helpers
def make_generator(
    generator: torch.Generator | None, seed: int | None, device: torch.device | str = "cpu"
) -> torch.Generator:
    """Return ``generator``, or a new one on ``device`` seeded with ``seed`` (default 0).

    Raises:
        ValueError: for a ``generator`` that is not a torch.Generator or a non-int ``seed``.
    """
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator; got {type(generator).__name__}")
        return generator
    seed = 0 if seed is None else positive_int(seed, "seed", minimum=0)
    return torch.Generator(device=device).manual_seed(seed)


def check_theta(reward: Any, theta: Any) -> torch.Tensor:
    """Validate ``theta`` (shape ``(..., D)`` with ``D = reward.num_params``, no NaN).

    Returns:
        ``theta`` as a tensor.

    Raises:
        ValueError: naming ``theta`` and the expected shape, or reporting NaN.
    """
    if not hasattr(reward, "returns"):
        raise ValueError(
            f"reward must be a reward model with .returns(theta, states, actions); got "
            f"{type(reward).__name__}"
        )
    theta = torch.as_tensor(theta)
    num = getattr(reward, "num_params", None)
    if theta.dim() < 1 or (num is not None and theta.shape[-1] != num):
        raise ValueError(
            f"theta must have shape (..., D) = (..., {num}); got {tuple(theta.shape)}"
        )
    if bool(torch.isnan(theta).any()):
        raise ValueError(f"theta contains NaN; got {theta.detach()}")
    return theta


def draw_returns(
    reward: Any, theta: torch.Tensor, states: torch.Tensor, actions: torch.Tensor
) -> torch.Tensor:
    """``R_theta(x_k)`` of K draws for every theta: shape ``theta.shape[:-1] + (K,)``.

    Args:
        reward: the reward model (``returns(theta, states, actions)``).
        theta: shape ``batch + (D,)``.
        states: the draws' states, ``(K, ...)`` as split by the space (continuous states
            are cast to theta's dtype).
        actions: the draws' actions, ``(K, ...)``.
    """
    if states.is_floating_point():
        states, actions = states.to(theta.dtype), actions.to(theta.dtype)
    return reward.returns(theta.unsqueeze(-2), states, actions)


# ---------------------------------------------------------------------------- normalisers
class TrajectoryBankNormalizer:
    """Shared machinery of normalisers that score a fixed bank of K trajectories.

    The bank holds trajectories x_k (``(K, *event_shape)`` in ``space``'s encoding) and
    offsets c_k (K,) such that ``log w_k(theta) = R_theta(x_k) + c_k`` and ``log Z_hat =
    logmeanexp_k log w_k``. Subclasses fill the bank in ``refresh`` (via :meth:`_set_bank`).

    Args:
        space: the trajectory space (:class:`bayes_irl.protocols.TrajectorySpace`).
        khat_policy: ``"warn"``, ``"raise"`` or ``"ignore"`` on PSIS k-hat > 0.7 (and, for a
            bank reused across theta with ``num_observations`` known, on an expected mode
            shift sqrt(n / ESS) above 0.2 posterior sd).
        kind: ``"global"`` (the only model with a single Z).
        num_observations: n, the observations whose likelihood uses this normaliser: the
            diagnostics then report the expected mode shift sqrt(n / ESS).

    Raises:
        ValueError: for an unknown ``kind`` or ``khat_policy``.
    """

    is_exact = False
    fresh_bank = False

    def __init__(
        self,
        space: Any,
        *,
        khat_policy: KhatPolicy,
        kind: str = "global",
        num_observations: int | None = None,
    ) -> None:
        if kind != "global":
            raise ValueError(
                f"kind must be 'global' for an importance normaliser (the causal model has "
                f"no single Z); got {kind!r}"
            )
        if khat_policy not in _KHAT_POLICIES:
            raise ValueError(f"khat_policy must be one of {_KHAT_POLICIES}; got {khat_policy!r}")
        self._space = space
        self.kind = kind
        self.khat_policy = khat_policy
        self._diagnostics: ImportanceDiagnostics | None = None
        self._bank: torch.Tensor | None = None
        self._offsets: torch.Tensor | None = None
        self._warned = False
        self.num_refreshes = 0
        self.num_observations = (
            None if num_observations is None else positive_int(num_observations,
                                                               "num_observations")
        )

    @property
    def space(self) -> Any:
        """The trajectory space the bank lives in."""
        return self._space

    @property
    def mdp(self) -> TabularMDP | None:
        """The tabular MDP (the same object as :attr:`space`), or None for other spaces."""
        return self._space if isinstance(self._space, TabularMDP) else None

    @property
    def diagnostics(self) -> ImportanceDiagnostics | None:
        """Diagnostics of the last single-theta estimate (None after a batch or a refresh)."""
        return self._diagnostics

    @property
    def bank(self) -> torch.Tensor:
        """The trajectories x_k, shape ``(K, *event_shape)``."""
        if self._bank is None:
            raise RuntimeError("the bank is empty; call refresh() first")
        return self._bank

    @property
    def offsets(self) -> torch.Tensor:
        """The theta-independent part c_k of each log-weight, shape (K,)."""
        if self._offsets is None:
            raise RuntimeError("the bank is empty; call refresh() first")
        return self._offsets

    @property
    def num_samples(self) -> int:
        """K, the number of trajectories in the bank."""
        return self.bank.shape[0]

    def _set_bank(self, trajectories: torch.Tensor, offsets: torch.Tensor) -> None:
        self._bank = trajectories
        self._split = self._space.split(trajectories)
        self._offsets = offsets.detach()
        self._warned = False
        self._diagnostics = None
        self.num_refreshes += 1

    def log_weights(self, reward: Any, theta: torch.Tensor) -> torch.Tensor:
        """Return ``log w_k = R_theta(x_k) + c_k``, shape ``theta.shape[:-1] + (K,)``.

        Args:
            reward: the reward model (``returns(theta, states, actions)``).
            theta: shape ``batch + (D,)``; differentiable.

        Raises:
            ValueError: for a ``theta`` of the wrong shape or with NaN.
        """
        returns = draw_returns(reward, check_theta(reward, theta), *self._split)
        return returns + self.offsets.to(returns.dtype)

    def log_normalizer(self, reward: Any, theta: torch.Tensor) -> torch.Tensor:
        """Return log Z_hat, shape ``theta.shape[:-1]`` (differentiable).

        For one theta (batch size 1) :attr:`diagnostics` is updated and PSIS k-hat > 0.7
        is reported according to ``khat_policy``; batched calls leave it None.
        """
        log_w = self.log_weights(reward, theta)
        if log_w[..., 0].numel() == 1:
            self._diagnose(log_w.detach().reshape(-1))
        else:
            self._diagnostics = None
        return log_mean_exp(log_w, dim=-1)

    def _compute_diagnostics(self, log_w: torch.Tensor) -> ImportanceDiagnostics:
        """Diagnostics of the bank's log-weights at one theta (SMC adds its sweep's)."""
        return importance_diagnostics(log_w, num_observations=self.num_observations)

    def _too_few_effective(self, diag: ImportanceDiagnostics) -> bool:
        """An extra reliability criterion of a subclass (SMC: its sweep's ESS)."""
        return False

    def _diagnose(self, log_w: torch.Tensor) -> None:
        self._diagnostics = diag = self._compute_diagnostics(log_w)
        khat, shift = diag.khat, diag.mode_shift
        shifted = not self.fresh_bank and shift > MODE_SHIFT_THRESHOLD
        if self.khat_policy == "ignore" or not (
            khat > KHAT_THRESHOLD or shifted or self._too_few_effective(diag)
        ):
            return
        message = (
            f"{type(self).__name__}: PSIS k-hat = {khat:.2f} (threshold {KHAT_THRESHOLD}), "
            f"ESS {diag.ess:.1f} of K = {diag.num_samples}, expected mode shift "
            f"sqrt(n / ESS) = {shift:.2f} posterior sd (threshold {MODE_SHIFT_THRESHOLD}); "
            "log Z_hat is unreliable. Train the guide policy "
            "(bayes_irl.inference.GuidePolicyTrainer), increase num_samples, draw a fresh "
            "bank per step (fresh_bank=True) or use a twisted proposal / SMC."
        )
        if self.khat_policy == "raise":
            raise ImportanceSamplingError(message)
        if not self._warned:
            self._warned = True
            warnings.warn(message, ImportanceWarning, stacklevel=4)

    def sample(
        self,
        reward: Any,
        theta: torch.Tensor,
        sample_shape: tuple[int, ...] | torch.Size = (),
        *,
        given_initial_state: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sampling-importance-resampling from the bank.

        Draws bank indices with probabilities wbar_k(theta) (with replacement), separately
        for every theta in the batch. Approximate: exact only as K -> infinity.

        Args:
            reward: the reward model.
            theta: shape ``batch_shape + (D,)``.
            sample_shape: leading sample shape.
            given_initial_state: must be False: resampling a bank cannot condition on s_0.
            generator: optional generator (default: the normaliser's own).

        Returns:
            Shape ``sample_shape + batch_shape + event_shape``.

        Raises:
            ValueError: for ``given_initial_state=True``.
        """
        if given_initial_state:
            raise ValueError(
                f"{type(self).__name__} cannot sample conditioned on the initial state "
                "(given_initial_state=True); use an exact normaliser"
            )
        sample_shape = torch.Size(sample_shape)
        with torch.no_grad():
            log_w = self.log_weights(reward, torch.as_tensor(theta).detach())
            batch_shape = log_w.shape[:-1]
            flat = torch.softmax(log_w.reshape(-1, log_w.shape[-1]), dim=-1)
            num = max(sample_shape.numel(), 1)
            index = torch.multinomial(
                flat, num, replacement=True, generator=generator or self.generator
            )  # (B, num)
            draws = self.bank[index.T.reshape(-1).to(self.bank.device)]  # (num * B, *event)
        return draws.reshape(sample_shape + batch_shape + self.bank.shape[1:])


class ImportanceNormalizer(TrajectoryBankNormalizer):
    """Importance-sampling estimate of log Z with a guide policy as the proposal.

    The one importance normaliser for tabular MDPs and black-box simulators alike
    (``SimulatorImportanceNormalizer`` is ``ImportanceNormalizer(SimulatorProposal(...))``).

    Args:
        proposal: a :class:`bayes_irl.protocols.GuidePolicy` with a ``space`` attribute:
            :class:`PolicyProposal`, :class:`TwistedProposal` (tabular) or
            :class:`~bayes_irl.inference.normalizers.simulator_proposal.SimulatorProposal`.
        num_samples: K >= 2, trajectories in the bank.
        kind: ``"global"`` (the only model with a single Z).
        khat_policy: on PSIS k-hat > 0.7: ``"warn"`` (an :class:`ImportanceWarning`, once
            per bank), ``"raise"`` (:class:`ImportanceSamplingError`) or ``"ignore"``.
        seed: seeds the normaliser's private generator (default 0) unless ``generator``.
        generator: a torch.Generator to draw the bank with.
        fresh_bank: draw a new bank at every :meth:`log_normalizer` call (every SVI step):
            the bank's error in E_wbar[phi] then averages out over steps instead of moving
            the posterior mode by ~sqrt(n / ESS) sd (see
            :mod:`bayes_irl.inference.diagnostics`); pair it with iterate averaging
            (:class:`bayes_irl.inference.iterate_averaging.IterateAveraging`).
        num_observations: n, for the expected mode shift in the diagnostics.

    Raises:
        ValueError: for a bad ``num_samples``, ``kind``, ``khat_policy`` or proposal.

    Example:
        >>> from bayes_irl import GridWorld
        >>> from bayes_irl.inference import ExactNormalizer
        >>> world = GridWorld.create(size=3, horizon=4, seed=0)
        >>> norm = ImportanceNormalizer(PolicyProposal(world.mdp), num_samples=4000, seed=1)
        >>> reward, theta = world.reward_model, world.true_weights
        >>> exact = ExactNormalizer(world.mdp).log_normalizer(reward, theta)
        >>> abs(float(norm.log_normalizer(reward, theta) - exact)) < 0.1
        True
    """

    def __init__(
        self,
        proposal: GuidePolicy,
        *,
        num_samples: int = 1000,
        kind: str = "global",
        khat_policy: KhatPolicy = "warn",
        seed: int | None = None,
        generator: torch.Generator | None = None,
        fresh_bank: bool = False,
        num_observations: int | None = None,
    ) -> None:
        if not isinstance(proposal, GuidePolicy) or not hasattr(proposal, "space"):
            raise ValueError(
                "proposal must be a GuidePolicy with a .space (PolicyProposal, "
                f"TwistedProposal or SimulatorProposal); got {type(proposal).__name__}"
            )
        super().__init__(
            proposal.space, kind=kind, khat_policy=khat_policy, num_observations=num_observations
        )
        self.fresh_bank = bool(fresh_bank)
        self.num_samples_requested = positive_int(num_samples, "num_samples", minimum=2)
        self.proposal = proposal
        device = getattr(proposal.space, "device", "cpu")
        self.generator = make_generator(generator, seed, device)
        self.refresh()

    def refresh(
        self, reward: Any = None, theta: torch.Tensor | None = None
    ) -> ImportanceNormalizer:
        """Draw a new bank of K trajectories from the (current) proposal; returns ``self``.

        ``reward`` and ``theta`` are accepted for interface symmetry with SMC and ignored.
        """
        value, log_ratio = self.proposal.draw(self.num_samples_requested, generator=self.generator)
        self._set_bank(value, log_ratio)
        return self

    def log_normalizer(self, reward: Any, theta: torch.Tensor) -> torch.Tensor:
        """Return log Z_hat, shape ``theta.shape[:-1]``; a fresh bank first if ``fresh_bank``."""
        if self.fresh_bank:
            self.refresh()
        return super().log_normalizer(reward, theta)

    def __repr__(self) -> str:
        return (
            f"ImportanceNormalizer(K={self.num_samples_requested}, fresh_bank={self.fresh_bank}, "
            f"proposal={type(self.proposal).__name__}, space={self.space!r})"
        )
