r"""NUTS in NumPy on a potential with a NumPy gradient: the fast path's sampler.

Pyro's NUTS costs about 0.9 ms of Python and autograd bookkeeping per leapfrog step even
for a trivial potential, more than one lean evaluation of the demonstration model's
potential (:class:`bayes_irl.models.lean_potential.LeanPotential`). This module runs the
same algorithm as Pyro's NUTS (and Stan's) with plain float64 arrays:

* a fixed dense mass matrix M = Sigma^{-1}, applied by whitening: with Sigma = L L^T the
  chain moves z, theta = loc + L z, so in z the mass matrix is the identity;
* leapfrog steps; trajectories doubled in a random direction until the no-U-turn
  criterion (the summed momentum rho against the end momenta: rho·r^- <= 0 or
  rho·r^+ <= 0, checked on every subtree and on the whole tree) or ``max_tree_depth``;
* multinomial sampling within a subtree and biased progressive sampling between the old
  tree and a new subtree (Betancourt 2017, "A conceptual introduction to HMC", A.3.2);
* a divergence when the energy error exceeds 1000 (Pyro's threshold); the divergent
  subtree is discarded;
* step-size adaptation during warm-up by dual averaging (Hoffman & Gelman 2014, Alg. 5:
  gamma = 0.05, t0 = 10, kappa = 0.75, mu = log(10 eps_0)) towards the mean acceptance
  statistic ``target_accept_prob``, from a step size found by doubling/halving until the
  one-step acceptance crosses 1/2.

Per draw it records the tree depth (doublings done), the leapfrog steps, the Hamiltonian
just after the momentum is resampled (for E-BFMI), divergence and the acceptance
statistic, like :class:`bayes_irl.inference.sampler_stats.SamplerStatsRecorder` does for
Pyro's kernel.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["LeanNUTS"]

_MAX_DELTA_ENERGY = 1000.0  # Pyro's divergence threshold


@dataclass
class _Point:
    z: np.ndarray
    r: np.ndarray
    grad: np.ndarray  # dU/dz
    potential: float


@dataclass
class _Tree:
    left: _Point
    right: _Point
    proposal: _Point
    log_weight: float  # log sum over the tree's states of exp(H0 - H)
    rho: np.ndarray  # summed momenta
    turning: bool
    diverging: bool
    accept_sum: float
    num_steps: int


class LeanNUTS:
    """One NUTS chain on ``U(theta)`` with the dense inverse mass matrix ``cov``.

    Args:
        value_and_grad: ``theta (D,) -> (U, dU/dtheta)`` in float64 NumPy.
        loc: the whitening centre (the MAP), shape (D,).
        cov: the inverse mass matrix Sigma (the Laplace covariance), shape (D, D).
        start: the chain's starting theta, shape (D,).
        seed: seeds the chain's NumPy generator.
        max_tree_depth: at most 2**max_tree_depth - 1 leapfrog steps per draw.
        target_accept_prob: dual-averaging target of the mean acceptance statistic.
        step_size: the first guess of the step size (then refined by doubling/halving).
    """

    def __init__(
        self,
        value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]],
        *,
        loc: np.ndarray,
        cov: np.ndarray,
        start: np.ndarray,
        seed: int,
        max_tree_depth: int,
        target_accept_prob: float,
        step_size: float,
    ) -> None:
        self._value_and_grad = value_and_grad
        self.loc = np.asarray(loc, dtype=np.float64)
        self.chol = np.linalg.cholesky(np.asarray(cov, dtype=np.float64))
        self.rng = np.random.default_rng(seed)
        self.max_tree_depth = int(max_tree_depth)
        self.target = float(target_accept_prob)
        z = np.linalg.solve(self.chol, np.asarray(start, dtype=np.float64) - self.loc)
        self.current = self._point(z, np.zeros_like(z))
        self.step_size = float(step_size)
        self.restart_adaptation()

    # ------------------------------------------------------------------ pieces
    def theta(self, z: np.ndarray) -> np.ndarray:
        """The parameters at z: theta = loc + L z."""
        return self.loc + self.chol @ z

    def _point(self, z: np.ndarray, r: np.ndarray) -> _Point:
        value, grad = self._value_and_grad(self.theta(z))
        return _Point(z, r, self.chol.T @ grad, float(value))

    def _leapfrog(self, point: _Point, step: float) -> _Point:
        r = point.r - 0.5 * step * point.grad
        z = point.z + step * r
        value, grad = self._value_and_grad(self.theta(z))
        grad_z = self.chol.T @ grad
        return _Point(z, r - 0.5 * step * grad_z, grad_z, float(value))

    @staticmethod
    def _energy(point: _Point) -> float:
        return point.potential + 0.5 * float(point.r @ point.r)

    def _initial_step_size(self, step: float) -> float:
        """Double or halve until the one-step acceptance probability crosses 1/2."""
        point = _Point(self.current.z, self.rng.standard_normal(self.current.z.shape),
                       self.current.grad, self.current.potential)
        start_energy = self._energy(point)

        def log_accept(eps: float) -> float:
            new = self._leapfrog(point, eps)
            delta = start_energy - self._energy(new)
            return delta if math.isfinite(delta) else -math.inf

        direction = 1 if log_accept(step) > math.log(0.5) else -1
        for _ in range(100):
            candidate = step * (2.0 ** direction)
            if (log_accept(candidate) > math.log(0.5)) != (direction == 1):
                break
            step = candidate
        return step

    # ------------------------------------------------------------------ the tree
    def _build(self, point: _Point, direction: int, depth: int, start_energy: float) -> _Tree:
        if depth == 0:
            new = self._leapfrog(point, direction * self.step_size)
            energy = self._energy(new)
            delta = energy - start_energy
            if not math.isfinite(delta):
                delta = math.inf
            diverging = delta > _MAX_DELTA_ENERGY
            return _Tree(new, new, new, -delta, new.r.copy(), False, diverging,
                         min(1.0, math.exp(-delta)) if delta > -700 else 1.0, 1)
        first = self._build(point, direction, depth - 1, start_energy)
        if first.turning or first.diverging:
            return first
        edge = first.right if direction > 0 else first.left
        second = self._build(edge, direction, depth - 1, start_energy)
        left, right = (first.left, second.right) if direction > 0 else (second.left, first.right)
        accept_sum = first.accept_sum + second.accept_sum
        num_steps = first.num_steps + second.num_steps
        if second.turning or second.diverging:
            return _Tree(left, right, first.proposal, first.log_weight, first.rho, True,
                         second.diverging, accept_sum, num_steps)
        log_weight = np.logaddexp(first.log_weight, second.log_weight)
        # multinomial sampling within the subtree
        if math.log(self.rng.uniform()) < second.log_weight - log_weight:
            proposal = second.proposal
        else:
            proposal = first.proposal
        rho = first.rho + second.rho
        turning = _turning(rho, left.r, right.r)
        return _Tree(left, right, proposal, float(log_weight), rho, turning, False,
                     accept_sum, num_steps)

    def sample(self) -> dict:
        """One NUTS transition; returns the draw's statistics (the state is kept)."""
        current = self.current
        r = self.rng.standard_normal(current.z.shape)
        point = _Point(current.z, r, current.grad, current.potential)
        start_energy = self._energy(point)
        left = right = proposal = point
        log_weight, rho = 0.0, r.copy()
        accept_sum, num_steps, depth, diverging = 0.0, 0, 0, False
        while depth < self.max_tree_depth:
            direction = 1 if self.rng.uniform() < 0.5 else -1
            edge = right if direction > 0 else left
            sub = self._build(edge, direction, depth, start_energy)
            depth += 1
            accept_sum += sub.accept_sum
            num_steps += sub.num_steps
            if sub.diverging:
                diverging = True
                break
            if sub.turning:
                break
            # biased progressive sampling: prefer the new subtree
            if math.log(self.rng.uniform()) < sub.log_weight - log_weight:
                proposal = sub.proposal
            if direction > 0:
                right = sub.right
            else:
                left = sub.left
            log_weight = float(np.logaddexp(log_weight, sub.log_weight))
            rho = rho + sub.rho
            if _turning(rho, left.r, right.r):
                break
        self.current = proposal
        return {
            "theta": self.theta(proposal.z),
            "tree_depth": depth,
            "n_steps": num_steps,
            "energy": start_energy,
            "diverging": diverging,
            "accept": accept_sum / max(num_steps, 1),
        }

    # ------------------------------------------------------------------ adaptation
    def adapt(self, accept: float) -> None:
        """One dual-averaging update of the step size from a draw's acceptance statistic."""
        gamma, t0, kappa = 0.05, 10.0, 0.75
        self._count += 1
        n = self._count
        eta = 1.0 / (n + t0)
        self._h_bar = (1 - eta) * self._h_bar + eta * (self.target - accept)
        log_eps = self._mu - math.sqrt(n) / gamma * self._h_bar
        weight = n ** (-kappa)
        self._log_eps_bar = weight * log_eps + (1 - weight) * self._log_eps_bar
        self.step_size = math.exp(log_eps)

    def restart_adaptation(self) -> None:
        """Start the dual averaging afresh from a step size found at the current point.

        The step size is ``step_size`` doubled or halved until the one-step acceptance
        probability crosses 1/2.
        """
        self.step_size = self._initial_step_size(self.step_size)
        self._mu = math.log(10 * self.step_size)
        self._h_bar, self._log_eps_bar, self._count = 0.0, 0.0, 0

    def rewhiten(self, draws: np.ndarray, *, shrinkage: float = 5.0) -> None:
        """Use the covariance of warm-up ``draws`` (shape (N, D), theta) as the mass matrix.

        The covariance is estimated in the current whitened coordinates and shrunk towards
        the identity there (the current mass matrix) with weight ``shrinkage / (N +
        shrinkage)``, as Stan regularises its windowed estimate; the sampler's position is
        kept, its step-size adaptation restarts (:meth:`restart_adaptation`).

        Why: the Laplace covariance is the curvature at the mode; where the posterior is
        skewed (the log-likelihood's curvature n Cov_theta[phi] grows quickly on one side),
        the typical set is narrower than it says in some directions, and a step size tuned
        in its whitened space diverges at the steep side.
        """
        theta = self.theta(self.current.z)
        draws = np.asarray(draws, dtype=np.float64)
        z = np.linalg.solve(self.chol, (draws - self.loc).T).T
        n = z.shape[0]
        cov_z = np.cov(z, rowvar=False).reshape(z.shape[1], z.shape[1])
        weight = n / (n + shrinkage)
        cov_z = weight * cov_z + (1 - weight) * np.eye(z.shape[1])
        self.loc = draws.mean(0)
        self.chol = self.chol @ np.linalg.cholesky(cov_z)
        z_now = np.linalg.solve(self.chol, theta - self.loc)
        self.current = self._point(z_now, np.zeros_like(z_now))
        self.restart_adaptation()

    def end_adaptation(self) -> None:
        """Fix the step size at the dual-averaging average (after warm-up)."""
        if self._count:
            self.step_size = math.exp(self._log_eps_bar)


def _turning(rho: np.ndarray, r_left: np.ndarray, r_right: np.ndarray) -> bool:
    """The no-U-turn criterion with identity mass matrix (whitened coordinates)."""
    return bool(rho @ r_left <= 0 or rho @ r_right <= 0)
