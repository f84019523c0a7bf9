"""fasthess: fast exact Hessians of two-layer teacher-student networks near the optimum.

Public names only; see DESIGN.md for the contract. Importing compiles nothing:
kernels compile on first call and are cached on disk.
"""
from ._runtime import apply_env_threads as _apply_env_threads
from ._runtime import get_num_threads, set_num_threads, threads
from .activations import ACTIVATION_NAMES, Activation, CustomActivation, Polynomial, Quadratic
from .data import POPULATION, gaussian_inputs
from .assembly import HessianBlocks, hessian, hessian_blocks, ntk
from .network import TwoLayerNet
from .objective import gradient, loss
from .operators import HessianOperator, HessianOperatorBase, hessian_operator
from .products import JacobianOperator, jacobian, jacobian_operator
from .rank import RankResult, UndeterminedRankWarning, numerical_rank
from .slq import SpectralDensity, spectral_density
from .spectrum import Spectrum, eigenvalues
from .extremes import eigsh
from .smallest import smallest_nonzero
from .traces import trace
from .online import OnlineODEResult, OnlineSGDResult, online_sgd, online_sgd_ode
from .dynamics import GDResult, gradient_descent, perturb
from .flow import FlowResult, gradient_flow
from .quadratic_model import decay_rate, predicted_loss
from .sweeps import load_sweep, sweep
from . import theory

__version__ = "0.2.0"

__all__ = [
    "ACTIVATION_NAMES", "Activation", "CustomActivation", "Polynomial", "Quadratic",
    "TwoLayerNet", "gaussian_inputs", "POPULATION",
    "hessian", "hessian_blocks", "HessianBlocks", "loss", "gradient",
    "hessian_operator", "HessianOperator", "HessianOperatorBase", "ntk",
    "jacobian", "jacobian_operator", "JacobianOperator",
    "eigenvalues", "Spectrum", "eigsh", "smallest_nonzero", "numerical_rank", "RankResult",
    "UndeterminedRankWarning",
    "spectral_density", "SpectralDensity", "trace",
    "gradient_descent", "GDResult", "perturb", "predicted_loss", "decay_rate",
    "gradient_flow", "FlowResult",
    "online_sgd_ode", "OnlineODEResult", "online_sgd", "OnlineSGDResult",
    "theory", "sweep", "load_sweep",
    "set_num_threads", "get_num_threads", "threads",
]

_apply_env_threads()  # FASTHESS_NUM_THREADS, if set: fasthess's own default (nothing else changes)

# Submodules loaded on first attribute access, as SciPy does: ``fh.distributed`` works
# after ``import fasthess as fh`` without importing Dask (or matplotlib) for everyone.
_LAZY_SUBMODULES = ("distributed", "figures")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'fasthess' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))
