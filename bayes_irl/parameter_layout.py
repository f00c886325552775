r"""Where the latent parameters live in the flat, unconstrained vector every method runs on.

Every inference method of bayes_irl works on one vector ``z`` of shape (D,) in unconstrained
space. A model's latent sites (``weights`` of shape (K,), a rationality ``beta`` > 0, ...)
map to slices of ``z`` through the bijection onto each site's support (Pyro's
``biject_to``), in the order the Pyro program samples them:

    theta_site = T_site(z[slice_site]),        log p_z(z) = log p(theta(z)) + log |det J_T(z)|.

A :class:`ParameterLayout` records those sites, shapes, slices and transforms, and turns
draws of ``z`` (any leading batch dimensions) into the constrained values a Posterior
stores. A site with real support has the identity transform, so for the common case (one
real-valued site) ``z`` *is* theta.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import biject_to, constraints
from torch.distributions.transforms import Transform, identity_transform

__all__ = ["ParameterLayout", "ParameterSite"]


@dataclass(frozen=True)
class ParameterSite:
    """One latent site in the flat vector.

    Attributes:
        name: the Pyro sample site's name.
        shape: the constrained value's shape (the site's batch and event shape).
        unconstrained_shape: the shape of its unconstrained value.
        transform: unconstrained -> constrained (``biject_to(support)``).
        start: its first index in ``z``.
    """

    name: str
    shape: torch.Size
    unconstrained_shape: torch.Size
    transform: Transform
    start: int

    @property
    def size(self) -> int:
        """The number of entries of ``z`` it occupies."""
        return math.prod(self.unconstrained_shape)

    @property
    def stop(self) -> int:
        """One past its last index in ``z``."""
        return self.start + self.size


class ParameterLayout:
    """The latent sites of a model laid out in one unconstrained vector ``z`` (D,).

    Args:
        sites: ``(name, constrained shape, support)`` per latent site, in sampling order.
        dtype: the floating dtype the model samples in.

    Raises:
        ValueError: for no sites or a repeated name.
    """

    def __init__(
        self,
        sites: list[tuple[str, torch.Size, constraints.Constraint]],
        *,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if not sites:
            raise ValueError("a parameter layout needs at least one latent site")
        names = [name for name, _, _ in sites]
        if len(set(names)) != len(names):
            raise ValueError(f"latent site names must be unique; got {names}")
        laid_out, start = [], 0
        for name, shape, support in sites:
            transform = biject_to(support)
            shape = torch.Size(shape)
            unconstrained = torch.Size(transform.inv.forward_shape(shape))
            laid_out.append(ParameterSite(name, shape, unconstrained, transform, start))
            start += laid_out[-1].size
        self.sites: tuple[ParameterSite, ...] = tuple(laid_out)
        self.size = start
        self.dtype = dtype

    @classmethod
    def real_vector(cls, name: str, size: int, *, dtype: torch.dtype = torch.float64):
        """The layout of one real-valued site of shape (size,): ``z`` is theta itself."""
        return cls([(name, torch.Size([size]), constraints.real)], dtype=dtype)

    @property
    def names(self) -> list[str]:
        """The site names in order."""
        return [site.name for site in self.sites]

    @property
    def is_identity(self) -> bool:
        """True for one real-valued vector site: ``z`` is the parameter itself."""
        return (len(self.sites) == 1 and self.sites[0].transform is identity_transform
                and len(self.sites[0].shape) == 1)

    def _check(self, z: Tensor) -> None:
        if z.shape[-1:] != (self.size,):
            raise ValueError(
                f"z must have shape (..., {self.size}) for the sites {self.names}; got "
                f"{tuple(z.shape)}")

    def unconstrained(self, z: Tensor) -> dict[str, Tensor]:
        """Split ``z`` (..., D) into unconstrained site values (..., *unconstrained_shape)."""
        self._check(z)
        batch = z.shape[:-1]
        return {site.name: z[..., site.start:site.stop].reshape(batch + site.unconstrained_shape)
                for site in self.sites}

    def constrain(self, z: Tensor) -> dict[str, Tensor]:
        """The constrained site values of ``z`` (..., D): name -> (..., *shape)."""
        return {site.name: site.transform(value)
                for site, value in zip(self.sites, self.unconstrained(z).values(), strict=True)}

    def flatten(self, values: dict[str, Tensor]) -> Tensor:
        """``z`` (..., D) of constrained site values (name -> (..., *shape)).

        Raises:
            ValueError: when a site is missing.
        """
        missing = [name for name in self.names if name not in values]
        if missing:
            raise ValueError(f"values lack the latent site(s) {missing}; expected {self.names}")
        parts = []
        for site in self.sites:
            value = torch.as_tensor(values[site.name])
            free = site.transform.inv(value)
            batch = free.shape[:free.dim() - len(site.unconstrained_shape)]
            parts.append(free.reshape(batch + (site.size,)))
        return torch.cat(parts, dim=-1)

    def log_abs_det_jacobian(self, z: Tensor) -> Tensor:
        """``log |det d theta / d z|`` summed over the sites, shape ``z.shape[:-1]``."""
        total = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        for site, free in zip(self.sites, self.unconstrained(z).values(), strict=True):
            term = site.transform.log_abs_det_jacobian(free, site.transform(free))
            extra = term.dim() - (z.dim() - 1)
            total = total + (term.reshape(z.shape[:-1] + (-1,)).sum(-1) if extra > 0 else term)
        return total

    def __repr__(self) -> str:
        sites = ", ".join(f"{s.name}{tuple(s.shape)}" for s in self.sites)
        return f"ParameterLayout({sites}; D={self.size})"
