"""fasthess: fast exact Hessians of two-layer teacher-student networks near the optimum."""
from .activations import ACTIVATION_NAMES, Activation, CustomActivation, Polynomial, Quadratic
from .data import gaussian_inputs
from .network import TwoLayerNet

__version__ = "0.1.0"
