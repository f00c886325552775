r"""Soft-Bellman recursions on tabular MDPs: soft values, Q-values, exact maxent sampling.

For step rewards r[..., s, a] (earned at t = 0..T-1), action base measure
log beta(a | s) and sparse transitions p(s' | s, a), define V_T(s) = 0 and for t = T-1..0

    Q_t(s, a) = r(s, a) + log beta(a | s) + C_t(s, a),      V_t(s) = log sum_a exp Q_t(s, a)

with the continuation C_t chosen by ``kind``:

* ``"global"`` (Ziebart et al. 2008, eq. 4; the model of docs/math.md): the trajectory
  distribution is P(x) = b(x) exp R(x) / Z with b(x) = p0(s_0) prod beta p, and

      C_t(s, a) = log sum_{s'} p(s' | s, a) exp V_{t+1}(s'),   log Z = log sum_s p0(s) exp V_0(s).

  V_t(s) is then the log-partition of all continuations from s at time t. With stochastic
  dynamics P *tilts* the transitions: P(s' | s, a, t) ∝ p(s' | s, a) exp V_{t+1}(s'), i.e.
  the demonstrator is modelled as choosing outcomes as well as actions.

* ``"causal"`` (maximum causal entropy, Ziebart et al. 2010, eqs. 6.5-6.6; the model of
  imitation's MCE IRL): the demonstrator controls only its actions, so

      C_t(s, a) = sum_{s'} p(s' | s, a) V_{t+1}(s'),   pi_t(a | s) = exp(Q_t(s, a) - V_t(s)),

  and the likelihood of a trajectory is p0(s_0) prod pi_t(a_t | s_t) p(s_{t+1} | s_t, a_t).
  There is no single Z; each step is normalised locally.

With deterministic dynamics the two coincide. Both are differentiable in r, and for a
linear reward the gradient of log Z is the expected feature count (Ziebart eq. 6), which
the tests check against enumeration.

The recursion and its adjoint are written once, in :mod:`bayes_irl.soft_bellman_kernel`
(compiled, float64, the first-derivative path of :func:`soft_values`);
``_soft_values_reference`` is its differentiable-twice torch twin for second derivatives.
Cost: O(T · S · A · F) time for fan-out F, O(T · S · A) memory for the saved value table,
policies and inverse sums, for any number of leading batch dimensions of r.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Literal

import numpy as np
import torch

from bayes_irl.mdp import TabularMDP

__all__ = [
    "log_partition",
    "soft_policy",
    "step_q_values",
    "categorical",
    "check_kind",
    "check_step_rewards",
    "KINDS",
    "soft_values",
    "continuation",
    "sample_maxent_trajectories",
    "MaxEntKind",
]

MaxEntKind = Literal["global", "causal"]
KINDS = ("global", "causal")


def check_kind(kind: str) -> None:
    """Raise ValueError unless ``kind`` is ``"global"`` or ``"causal"``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")


def check_step_rewards(mdp: TabularMDP, step_rewards: torch.Tensor) -> None:
    """Raise ValueError unless ``step_rewards`` is a tensor of shape ``(..., S, A)``."""
    if not torch.is_tensor(step_rewards):
        raise ValueError(f"step_rewards must be a torch.Tensor; got {type(step_rewards).__name__}")
    if step_rewards.dim() < 2 or step_rewards.shape[-2:] != (mdp.num_states, mdp.num_actions):
        raise ValueError(
            f"step_rewards must have shape (..., S, A) = (..., {mdp.num_states}, "
            f"{mdp.num_actions}); got {tuple(step_rewards.shape)}"
        )


class _TransitionOperator:
    """The transition matrix as a sparse (CSR) linear map, cached per MDP, dtype and device.

    ``forward(x)`` maps state vectors x[b, s'] to ``(P x)[b, s, a] = sum_s' p(s'|s,a) x[b, s']``
    and ``adjoint(y)`` maps y[b, s, a] to ``(P^T y)[b, s'] = sum_{s,a} p(s'|s,a) y[b, s, a]``.
    Zero-probability padding is dropped and duplicate successors are summed, so the matrix
    of shape (S·A, S) has at most S·A·F stored entries.
    """

    def __init__(self, mdp: TabularMDP, dtype: torch.dtype, device: torch.device) -> None:
        num_states, num_actions, fan_out = mdp.successors.shape
        probs = mdp.successor_log_probs.exp().to(device=device, dtype=dtype).reshape(-1)
        rows = torch.arange(num_states * num_actions, device=device).repeat_interleave(fan_out)
        cols = mdp.successors.to(device).reshape(-1)
        keep = probs > 0
        index = torch.stack([rows[keep], cols[keep]])
        shape = (num_states * num_actions, num_states)
        with warnings.catch_warnings():
            # "Sparse CSR tensor support is in beta state": CSR @ dense is what we use, and
            # it is exercised by the tests against the gather-based reference.
            warnings.simplefilter("ignore", UserWarning)
            coo = torch.sparse_coo_tensor(
                index, probs[keep], shape, check_invariants=False
            ).coalesce()
            self.matrix = coo.to_sparse_csr()
            self.matrix_t = coo.t().coalesce().to_sparse_csr()
        self.num_states, self.num_actions = num_states, num_actions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map x (B, S) to P x of shape (B, S, A)."""
        if x.shape[0] == 1:
            out = (self.matrix @ x[0]).unsqueeze(0)
        else:
            out = (self.matrix @ x.t()).t()
        return out.reshape(x.shape[0], self.num_states, self.num_actions)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Map y (B, S, A) to P^T y of shape (B, S)."""
        flat = y.reshape(y.shape[0], -1)
        if flat.shape[0] == 1:
            return (self.matrix_t @ flat[0]).unsqueeze(0)
        return (self.matrix_t @ flat.t()).t()


_OPERATORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _operator(mdp: TabularMDP, dtype: torch.dtype, device: torch.device) -> _TransitionOperator:
    """Return the cached :class:`_TransitionOperator` of ``mdp`` (built on first use)."""
    per_mdp = _OPERATORS.setdefault(mdp, {})
    key = (dtype, torch.device(device))
    if key not in per_mdp:
        per_mdp[key] = _TransitionOperator(mdp, dtype, device)
    return per_mdp[key]


class _ApplyTransitions(torch.autograd.Function):
    """Differentiable ``x[b, s'] -> (P x)[b, s, a]`` with the sparse operator."""

    @staticmethod
    def forward(ctx, x, op):  # noqa: D102
        ctx.op = op
        return op.forward(x)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return _ApplyTransitionsAdjoint.apply(grad, ctx.op), None


class _ApplyTransitionsAdjoint(torch.autograd.Function):
    """Differentiable ``y[b, s, a] -> (P^T y)[b, s']`` (the adjoint, for double backward)."""

    @staticmethod
    def forward(ctx, y, op):  # noqa: D102
        ctx.op = op
        return op.adjoint(y)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return _ApplyTransitions.apply(grad, ctx.op), None


def continuation(
    mdp: TabularMDP, next_values: torch.Tensor, *, kind: MaxEntKind = "global"
) -> torch.Tensor:
    """Return the continuation ``C[..., s, a]`` from next-step values ``V[..., s']``.

    The causal continuation is linear in V and uses the sparse transition operator; the
    global one is a log-sum-exp over the F successors (the numerically safe reference).

    Args:
        mdp: the MDP.
        next_values: V_{t+1}, shape (..., S).
        kind: ``"global"`` (log-expectation of exp V) or ``"causal"`` (expectation of V).

    Returns:
        Tensor of shape (..., S, A).
    """
    if kind == "causal" and bool(torch.isfinite(next_values).all()):
        op = _operator(mdp, next_values.dtype, next_values.device)
        flat = next_values.reshape(-1, mdp.num_states)
        out = _ApplyTransitions.apply(flat, op)
        return out.reshape(*next_values.shape[:-1], mdp.num_states, mdp.num_actions)
    gathered = next_values[..., mdp.successors]  # (..., S, A, F)
    if kind == "global":
        return torch.logsumexp(gathered + mdp.successor_log_probs, dim=-1)
    probs = mdp.successor_log_probs.exp()
    return (gathered * probs).sum(-1)


def _soft_values_reference(mdp: TabularMDP, local: torch.Tensor, kind: MaxEntKind) -> torch.Tensor:
    """Log-space recursion with autograd: local (..., S, A) -> V (..., T + 1, S).

    The differentiable-twice twin of :func:`bayes_irl.soft_bellman_kernel.soft_bellman_forward`
    (tests/test_soft_bellman_kernel.py checks the two equal, values and gradients): used for
    second derivatives, integer rewards and inputs the kernel does not take.
    """
    value = torch.zeros(local.shape[:-1], dtype=local.dtype, device=local.device)
    values = [value]
    gathered_probs = mdp.successor_log_probs.to(local.dtype)
    probs = gathered_probs.exp()
    for _ in range(mdp.horizon):
        gathered = value[..., mdp.successors]  # (..., S, A, F)
        if kind == "global":
            cont = torch.logsumexp(gathered + gathered_probs, dim=-1)
        else:
            cont = (gathered * probs).sum(-1)
        value = torch.logsumexp(local + cont, dim=-1)
        values.append(value)
    return torch.stack(values[::-1], dim=-2)


_TRANSITION_ROWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _kernel():
    """:mod:`bayes_irl.soft_bellman_kernel`, imported on first use (Numba's import ~0.3 s)."""
    import bayes_irl.soft_bellman_kernel as soft_bellman_kernel

    return soft_bellman_kernel


def _transition_rows(mdp: TabularMDP) -> tuple[np.ndarray, np.ndarray]:
    """The MDP's padded transition rows for the kernel (built on first use, cached)."""
    rows = _TRANSITION_ROWS.get(mdp)
    if rows is None:
        rows = _TRANSITION_ROWS[mdp] = _kernel().padded_transitions(
            mdp.successors.cpu().numpy(),
            mdp.successor_log_probs.detach().exp().cpu().double().numpy(),
        )
    return rows


class _SoftValues(torch.autograd.Function):
    """``local (B, S, A) -> V (B, T + 1, S)`` by the compiled kernel, its adjoint as backward.

    Forward and backward are :func:`bayes_irl.soft_bellman_kernel.soft_bellman_forward` and
    :func:`~bayes_irl.soft_bellman_kernel.soft_bellman_adjoint` on float64 CPU copies (a
    float32 or CUDA input is computed in float64 on the CPU and cast back). Only the value
    table, the policies and the global inverse sums are kept, O(T·S·A), not autograd's
    O(T·S·A·F) intermediates. Second derivatives (``create_graph=True``: Laplace,
    Hessians) and inputs the kernel does not take (NaN, +inf, a state without a finite
    action score) go through :func:`_soft_values_reference`, the differentiable-twice
    twin of the kernel, tested equal to it.
    """

    @staticmethod
    def forward(ctx, local, mdp, kind):  # noqa: D102
        batch, num_states, num_actions = local.shape
        flat = local.detach().to(device="cpu", dtype=torch.float64).reshape(batch, -1).numpy()
        ctx.mdp, ctx.kind, ctx.saved = mdp, kind, None
        kernel = _kernel()
        if kernel.local_is_supported(flat, num_actions):
            successors, probs = _transition_rows(mdp)
            out = kernel.soft_bellman_forward(
                np.ascontiguousarray(flat), successors, probs, num_actions, mdp.horizon,
                kernel.kind_code(kind))
            if np.isfinite(out[0]).all():
                ctx.saved = out
        ctx.save_for_backward(local)
        if ctx.saved is None:
            return _soft_values_reference(mdp, local.detach(), kind)
        # a copy: the backward reads the saved table, the caller may write to the output
        return torch.from_numpy(ctx.saved[0].copy()).to(dtype=local.dtype, device=local.device)

    @staticmethod
    def backward(ctx, grad_values):  # noqa: D102
        (local,) = ctx.saved_tensors
        mdp, kind = ctx.mdp, ctx.kind
        if ctx.saved is None or torch.is_grad_enabled():
            # create_graph=True (a Hessian is wanted) or an input the kernel declined: the
            # reference recursion, whose own autograd graph is differentiable again.
            create_graph = torch.is_grad_enabled()
            with torch.enable_grad():
                source = local if create_graph else local.detach().requires_grad_()
                ref = _soft_values_reference(mdp, source, kind)
                (grad,) = torch.autograd.grad(ref, source, grad_values, create_graph=create_graph)
            return grad, None, None
        values, policies, inverse_sums = ctx.saved
        successors, probs = _transition_rows(mdp)
        kernel = _kernel()
        grad = kernel.soft_bellman_adjoint(
            np.ascontiguousarray(grad_values.detach().to(device="cpu", dtype=torch.float64)
                                 .numpy()),
            values, policies, inverse_sums, successors, probs, mdp.num_actions,
            kernel.kind_code(kind))
        return torch.from_numpy(grad).reshape(local.shape).to(
            dtype=local.dtype, device=local.device), None, None


Backend = Literal["auto", "sparse", "reference"]


def soft_values(
    mdp: TabularMDP,
    step_rewards: torch.Tensor,
    *,
    kind: MaxEntKind = "global",
    backend: Backend = "auto",
) -> torch.Tensor:
    """Run the backward recursion and return the soft values.

    Args:
        mdp: the MDP (base measure and horizon T).
        step_rewards: ``r[..., s, a]``, shape (..., S, A), any leading batch dims.
        kind: ``"global"`` or ``"causal"`` (see module docstring).
        backend: ``"sparse"`` (the compiled kernel of :mod:`bayes_irl.soft_bellman_kernel`
            on sparse transition rows, float64 on the CPU, its adjoint as the backward
            pass), ``"reference"`` (log-space gather recursion differentiated by autograd:
            slower, O(T·S·A·F) autograd memory, differentiable twice), or ``"auto"``
            (= ``"sparse"``; second derivatives, integer rewards and inputs with NaN, +inf
            or a state without a finite action score go to the reference by themselves).

    Returns:
        ``V[..., t, s]`` of shape (..., T + 1, S) with ``V[..., T, :] = 0``.

    Raises:
        ValueError: for an unknown ``kind`` or ``backend`` or mis-shaped rewards.
    """
    check_kind(kind)
    check_step_rewards(mdp, step_rewards)
    if backend not in ("auto", "sparse", "reference"):
        raise ValueError(f"backend must be 'auto', 'sparse' or 'reference'; got {backend!r}")
    local = step_rewards + mdp.action_log_base.to(step_rewards.dtype)  # (..., S, A)
    if backend == "reference" or not local.dtype.is_floating_point:
        return _soft_values_reference(mdp, local, kind)
    batch_shape = local.shape[:-2]
    flat = local.reshape(-1, mdp.num_states, mdp.num_actions)
    values = _SoftValues.apply(flat, mdp, kind)
    return values.reshape(*batch_shape, mdp.horizon + 1, mdp.num_states)


def step_q_values(
    mdp: TabularMDP,
    step_rewards: torch.Tensor,
    next_values: torch.Tensor,
    *,
    kind: MaxEntKind = "global",
) -> torch.Tensor:
    """Return ``Q_t[..., s, a]`` given ``V_{t+1}`` (shape (..., S)); shape (..., S, A)."""
    return step_rewards + mdp.action_log_base + continuation(mdp, next_values, kind=kind)


def soft_policy(
    mdp: TabularMDP,
    step_rewards: torch.Tensor,
    *,
    kind: MaxEntKind = "global",
    values: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return the soft-optimal policy ``log pi[..., t, s, a] = Q_t(s, a) - V_t(s)``.

    The one soft-policy function: for ``kind="causal"`` the maximum-causal-entropy policy,
    for ``"global"`` the action conditionals ``P(a_t | s_t)`` of the global maxent
    distribution (its transitions are tilted as well, see the module docstring).

    Args:
        mdp: the MDP.
        step_rewards: ``r[..., s, a]``, shape (..., S, A).
        kind: ``"global"`` or ``"causal"``.
        values: optional ``V[..., t, s]`` (..., T + 1, S) from :func:`soft_values` with
            the same ``kind`` (saves the recursion when the caller has it).

    Returns:
        ``log pi`` of shape (..., T, S, A); ``logsumexp`` over a is 0 where V_t is finite.
    """
    check_kind(kind)
    if values is None:
        values = soft_values(mdp, step_rewards, kind=kind)
    q = step_q_values(mdp, step_rewards.unsqueeze(-3), values[..., 1:, :], kind=kind)
    return q - values[..., :-1, :].unsqueeze(-1)


def log_partition(mdp: TabularMDP, step_rewards: torch.Tensor) -> torch.Tensor:
    """Return ``log Z = log sum_s p0(s) exp V_0(s)`` of the global model, shape (...,).

    Args:
        mdp: the MDP (base measure).
        step_rewards: ``r[..., s, a]``, shape (..., S, A).

    Raises:
        ValueError: for mis-shaped rewards.
    """
    v0 = soft_values(mdp, step_rewards, kind="global")[..., 0, :]
    return torch.logsumexp(v0 + mdp.initial.log(), dim=-1)


def categorical(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Draw one index per row of ``logits`` (shape (N, C)); returns shape (N,)."""
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def sample_maxent_trajectories(
    mdp: TabularMDP,
    step_rewards: torch.Tensor,
    num_samples: int,
    *,
    kind: MaxEntKind = "global",
    initial_states: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw exact samples from the maxent trajectory distribution.

    Backward recursion, then forward sampling: s_0 from p0 (tilted by exp V_0 for the
    global model unless ``initial_states`` are given), a_t from pi_t(a | s) ∝ exp Q_t(s, a),
    s_{t+1} from p(s' | s, a) (tilted by exp V_{t+1}(s') for the global model).

    Args:
        mdp: the MDP.
        step_rewards: ``r[s, a]`` of shape (S, A) (one reward; use a loop or the
            distribution's ``sample`` for batched rewards).
        num_samples: number of trajectories n >= 1.
        kind: ``"global"`` or ``"causal"``.
        initial_states: optional int tensor of shape (n,): condition on these s_0.
        generator: torch random generator for reproducibility.

    Returns:
        int64 tensor of shape (n, T + 1, 2) in the trajectory encoding (states in
        ``[..., 0]``, actions in ``[..., 1]``, last action -1).
    """
    check_kind(kind)
    check_step_rewards(mdp, step_rewards)
    if step_rewards.dim() != 2:
        raise ValueError(
            f"step_rewards must have shape (S, A) for sampling; got {tuple(step_rewards.shape)}"
        )
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be >= 1; got {num_samples}")
    with torch.no_grad():
        values = soft_values(mdp, step_rewards, kind=kind)
        if initial_states is None:
            logits0 = mdp.initial.log()
            if kind == "global":
                logits0 = logits0 + values[0]
            state = categorical(logits0.expand(num_samples, -1), generator)
        else:
            state = torch.as_tensor(initial_states, dtype=torch.int64, device=mdp.device)
            if state.shape != (num_samples,):
                raise ValueError(
                    f"initial_states must have shape ({num_samples},); got {tuple(state.shape)}"
                )
        states, actions = [state], []
        for t in range(mdp.horizon):
            q = step_q_values(mdp, step_rewards, values[t + 1], kind=kind)  # (S, A)
            action = categorical(q[state], generator)
            succ_logits = mdp.successor_log_probs[state, action]  # (n, F)
            succ = mdp.successors[state, action]
            if kind == "global":
                succ_logits = succ_logits + values[t + 1][succ]
            choice = categorical(succ_logits, generator)
            state = succ.gather(-1, choice.unsqueeze(-1)).squeeze(-1)
            states.append(state)
            actions.append(action)
        actions.append(torch.full_like(state, -1))
        return torch.stack([torch.stack(states, -1), torch.stack(actions, -1)], dim=-1)
