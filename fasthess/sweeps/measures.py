"""Measures: what a sweep computes for each configuration, one registry entry each.

A built-in measure is a function ``f(problem) -> (scalars, arrays)`` registered with
:func:`register`, which records its name, its doc line and its parameters (each
with its type and default, taken from the configuration). :data:`REGISTRY` is the
only table of measures: the configuration grammar, the grid files, the key of a
record and the list below all read it, so adding a measure is one decorated
function here. ``problem`` is a :class:`fasthess.sweeps.task.Problem`: the
teacher ``net``, the inputs ``X``, the canonical ``config``, ``n_samples``,
``seed_for(name)`` and the cached ``eigenvalues()``.

A parameter's default is written into the canonical configuration, and so into the
record's key: changing a default changes the keys instead of silently mixing old
and new results in one store.

Built-in measures
-----------------
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

__all__ = ["Parameter", "Measure", "REGISTRY", "MEASURES", "register"]


@dataclass(frozen=True)
class Parameter:
    """A measure's parameter, read from the configuration.

    Attributes
    ----------
    kind : type
        ``int`` or ``float``: the type the configuration's value must have.
    default : int or float
        The value when the configuration does not give one.
    doc : str
        One line: what it sets.
    """

    kind: type
    default: int | float
    doc: str


@dataclass(frozen=True)
class Measure:
    """One registry entry: a built-in measure.

    Attributes
    ----------
    name : str
        Its name in configurations, grid files and the store.
    function : callable
        ``function(problem) -> (scalars, arrays)``: dicts of JSON scalars and of
        NumPy arrays.
    doc : str
        One line: what it computes.
    parameters : mapping of str to Parameter
        The configuration keys it reads.
    """

    name: str
    function: Callable
    doc: str
    parameters: Mapping[str, Parameter]


#: Every built-in measure by name, in the order they were registered.
REGISTRY: dict[str, Measure] = {}


def register(name: str, doc: str, **parameters: Parameter):
    """Decorator: add ``function(problem) -> (scalars, arrays)`` as measure ``name``.

    Parameters
    ----------
    name : str
        The measure's name; must be new.
    doc : str
        One line for the documentation.
    **parameters : Parameter
        The configuration keys the measure reads. A key belongs to one measure only,
        so that a configuration giving it names the measure it is for.

    Returns
    -------
    callable
        The decorator; it returns the function unchanged.

    Examples
    --------
    >>> from fasthess.sweeps.measures import REGISTRY
    >>> REGISTRY["smallest_nonzero"].parameters["k"].default
    5
    """
    if name in REGISTRY:
        raise ValueError(f"measure {name!r} is already registered")
    for key, parameter in parameters.items():
        if not isinstance(parameter, Parameter) or parameter.kind not in (int, float):
            raise TypeError(f"measure {name!r}: parameter {key!r} must be a Parameter of "
                            f"kind int or float")
        owner = next((m.name for m in REGISTRY.values() if key in m.parameters), None)
        if owner is not None:
            raise ValueError(f"measure {name!r}: parameter {key!r} already belongs to "
                             f"measure {owner!r}")

    def add(function):
        REGISTRY[name] = Measure(name, function, doc, MappingProxyType(dict(parameters)))
        return function

    return add


# ---------------------------------------------------------------------- built-in measures
@register("eigenvalues", 'all eigenvalues (``fasthess.eigenvalues``, method "auto")')
def eigenvalues(problem):
    result = problem.eigenvalues()
    return {"eigenvalues_method": result.method}, {"eigenvalues": result.eigenvalues}


@register("rank", "numerical rank of those eigenvalues, its tolerance and gap, whether "
                  "it is undetermined (no gap at the tolerance), and the predicted "
                  "effective parameters (``fasthess.theory``)")
def rank(problem):
    from ..rank import numerical_rank
    from ..theory import effective_parameters

    # the record carries the flag: a warning in a worker's log would go unread
    result = numerical_rank(problem.eigenvalues().eigenvalues, warn=False)
    c = problem.config
    try:
        predicted = effective_parameters(problem.net.activation, c["n_in"], c["n_hidden"],
                                         c["n_out"], n_samples=problem.n_samples)
    except (ValueError, NotImplementedError):  # no closed form for this activation
        predicted = None
    return {"rank": result.rank, "rank_tolerance": result.tolerance,
            "rank_gap_decades": result.gap_decades, "rank_undetermined": result.undetermined,
            "effective_parameters": predicted}, {}


@register("smallest_nonzero", "the k smallest nonzero eigenvalues",
          k=Parameter(int, 5, "eigenvalues to compute"))
def smallest_nonzero(problem):
    from ..smallest import smallest_nonzero as compute

    return {}, {"smallest_nonzero": compute(problem.net, problem.X, problem.config["k"])}


@register("density", "stochastic Lanczos quadrature spectral density",
          n_probes=Parameter(int, 20, "Lanczos probes"),
          n_steps=Parameter(int, 60, "Lanczos steps per probe"))
def density(problem):
    from ..slq import spectral_density

    c = problem.config
    result = spectral_density(problem.net, problem.X, n_probes=c["n_probes"],
                              n_steps=c["n_steps"], rng=problem.seed_for("density"))
    return {}, {"density_grid": result.grid, "density": result.density,
                "density_nodes": result.nodes, "density_weights": result.weights}


@register("dynamics", "the loss curve of gradient descent from a perturbed student",
          # well inside 2 / lambda_max for the sizes a sweep usually covers (lambda_max
          # ~ 50 for quadratic at Ni = Nh = 40, ~ 7 for relu)
          lr=Parameter(float, 0.01, "learning rate (stable below 2 / lambda_max)"),
          steps=Parameter(int, 200, "gradient-descent updates"),
          perturbation=Parameter(float, 0.01, "standard deviation of the student's "
                                              "offset from the teacher"))
def dynamics(problem):
    from ..dynamics import gradient_descent, perturb

    c = problem.config
    student = perturb(problem.net, c["perturbation"], rng=problem.seed_for("dynamics"))
    result = gradient_descent(student, problem.X, c["lr"], c["steps"], teacher=problem.net)
    return ({"diverged": bool(result.diverged), "final_loss": float(result.loss[-1])},
            {"dynamics_loss": result.loss, "dynamics_steps": result.steps})


#: The names of the built-in measures.
MEASURES = tuple(REGISTRY)


def _document_registry() -> str:
    """The list of built-in measures and their parameters, for the module docstring."""
    lines = []
    for m in REGISTRY.values():
        lines.append(f"``{m.name}``\n    {m.doc}.")
        for key, p in m.parameters.items():
            lines.append(f"    ``{key}`` ({p.kind.__name__}, default {p.default}): {p.doc}.")
    return "\n".join(lines) + "\n"


if __doc__:  # None under python -OO
    __doc__ += _document_registry()
