"""TwoLayerNet: the teacher/student model y(x) = w2 @ g(w1 @ x), no biases."""
from __future__ import annotations

import numpy as np

from ._validation import (check_dtype, check_float_array, check_inputs, check_instance,
                          check_int, check_real)
from .activations import Activation, get_activation
from .data import is_population

__all__ = ["TwoLayerNet"]


class TwoLayerNet:
    """A two-layer network with weights ``w1`` (Nh x Ni) and ``w2`` (No x Nh).

    Parameters
    ----------
    w1 : array, shape (n_hidden, n_in)
    w2 : array, shape (n_out, n_hidden); a 1-d array is taken as one output.
    activation : str or Activation

    The flat parameter vector is ``theta = concat(w1.ravel(), w2.ravel())``
    (C order), of length D = Nh*Ni + No*Nh; every Hessian uses this order.

    Examples
    --------
    >>> import fasthess as fh
    >>> net = fh.TwoLayerNet.random(4, 3, n_out=2, activation="erf", seed=0)
    >>> net.n_params
    18
    >>> net.forward(fh.gaussian_inputs(5, 4, seed=1)).shape
    (5, 2)
    """

    def __init__(self, w1, w2, activation="erf"):
        # the network owns its weights: copied and read-only, so that changing the
        # caller's arrays later cannot silently change the network
        w1 = check_float_array(w1, "w1", ndim=2)
        w2 = np.asarray(w2)
        if w2.ndim == 1:
            w2 = w2[None, :]
        w2 = check_float_array(w2, "w2", ndim=2)
        if w2.shape[1] != w1.shape[0]:
            raise ValueError(
                f"w2 must have shape (n_out, n_hidden) with n_hidden = w1.shape[0] = "
                f"{w1.shape[0]}, got w2.shape = {w2.shape}")
        dtype = np.result_type(w1.dtype, w2.dtype)
        self.w1 = _owned(w1, dtype)
        self.w2 = _owned(w2, dtype)
        self.activation: Activation = get_activation(activation)

    # ------------------------------------------------------------------ construction
    @classmethod
    def random(cls, n_in, n_hidden, n_out=1, activation="erf", w1_std=None, w2_std=None,
               seed=None, dtype=np.float64):
        """A teacher with w1 ~ N(0, w1_std^2), w2 ~ N(0, w2_std^2).

        Defaults: w1_std = 1/sqrt(n_in), w2_std = 1/sqrt(n_hidden), so that
        pre-activations and outputs are O(1).
        """
        n_in = check_int(n_in, "n_in", minimum=1)
        n_hidden = check_int(n_hidden, "n_hidden", minimum=1)
        n_out = check_int(n_out, "n_out", minimum=1)
        s1 = 1.0 / np.sqrt(n_in) if w1_std is None else check_real(w1_std, "w1_std",
                                                                     positive=True)
        s2 = 1.0 / np.sqrt(n_hidden) if w2_std is None else check_real(w2_std, "w2_std",
                                                                         positive=True)
        dt = check_dtype(dtype)
        rng = np.random.default_rng(seed)
        w1 = (s1 * rng.standard_normal((n_hidden, n_in))).astype(dt)
        w2 = (s2 * rng.standard_normal((n_out, n_hidden))).astype(dt)
        return cls(w1, w2, activation)

    @classmethod
    def from_parameters(cls, theta, like: "TwoLayerNet"):
        """A network with the shapes and activation of ``like`` and flat parameters theta."""
        check_instance(like, TwoLayerNet, "like", "a fasthess.TwoLayerNet")
        theta = check_float_array(theta, "theta", ndim=1)
        if theta.size != like.n_params:
            raise ValueError(f"theta must have length n_params = {like.n_params} for a "
                             f"{like.shape} network, got {theta.size}")
        d1 = like.w1.size
        return cls(theta[:d1].reshape(like.w1.shape), theta[d1:].reshape(like.w2.shape),
                   like.activation)

    # ------------------------------------------------------------------ properties
    @property
    def n_in(self) -> int:
        return self.w1.shape[1]

    @property
    def n_hidden(self) -> int:
        return self.w1.shape[0]

    @property
    def n_out(self) -> int:
        return self.w2.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(n_in, n_hidden, n_out)."""
        return (self.n_in, self.n_hidden, self.n_out)

    @property
    def n_params(self) -> int:
        """D = Nh*Ni + No*Nh."""
        return self.w1.size + self.w2.size

    @property
    def dtype(self) -> np.dtype:
        return self.w1.dtype

    def parameters(self) -> np.ndarray:
        """Flat theta = concat(w1.ravel(), w2.ravel()) (a copy)."""
        return np.concatenate([self.w1.ravel(), self.w2.ravel()])

    def astype(self, dtype) -> "TwoLayerNet":
        dt = check_dtype(dtype)
        if dt == self.dtype:
            return self
        return TwoLayerNet(self.w1.astype(dt), self.w2.astype(dt), self.activation)

    # ------------------------------------------------------------------ evaluation
    def forward(self, X) -> np.ndarray:
        """Outputs y = g(X w1^T) w2^T, shape (P, n_out).

        Parameters
        ----------
        X : array, shape (P, n_in)

        Returns
        -------
        ndarray, shape (P, n_out), in X's dtype (float64 for integer X).
        """
        return self.outputs(self.check_inputs(X))

    __call__ = forward

    def outputs(self, X: np.ndarray) -> np.ndarray:
        """:meth:`forward` on inputs that are already validated (no checks repeated)."""
        pre = X @ self.w1.T.astype(X.dtype, copy=False)
        act, _, _ = activation_outputs(self.activation, pre, derivatives=False)
        out = act @ self.w2.T.astype(X.dtype, copy=False)
        if not np.all(np.isfinite(out)):
            raise ValueError(f"X: the outputs of this network overflow in {X.dtype} "
                             f"(activation {self.activation.name!r}, |X| up to "
                             f"{float(np.max(np.abs(X))):.3g}); reduce the weight or input "
                             "scale, or use float64")
        return out

    def check_inputs(self, X, name: str = "X", dtype=None, copy: bool = False) -> np.ndarray:
        """Validate X against this network: shape (P, n_in), finite, real.

        Integers are upcast to float64 (see :func:`fasthess._validation.check_float_array`).
        """
        if is_population(X):
            raise ValueError(f"{name}: fasthess.POPULATION (P -> infinity) has no outputs to "
                             f"compute; pass inputs of shape (n_samples, {self.n_in})")
        return check_inputs(X, self.n_in, name, dtype=dtype, copy=copy)

    def __repr__(self):
        return (f"TwoLayerNet(n_in={self.n_in}, n_hidden={self.n_hidden}, n_out={self.n_out}, "
                f"activation={self.activation.name!r}, dtype={self.dtype})")


def _owned(a: np.ndarray, dtype) -> np.ndarray:
    out = np.array(a, dtype=dtype, order="C", copy=True)
    out.setflags(write=False)
    return out


def activation_outputs(activation: Activation, pre: np.ndarray, derivatives: bool = True):
    """(g, g', g'') of the pre-activations (P x Nh); the derivatives are None unless asked."""
    out_g = np.empty_like(pre)
    if not derivatives and activation.code >= 0:
        from ._kernels.activation import apply_activation_value

        apply_activation_value(activation.code, activation.kernel_coeffs(pre.dtype), pre, out_g)
        return out_g, None, None
    d1 = np.empty_like(pre)
    d2 = np.empty_like(pre)
    activation.apply(pre, out_g, d1, d2)
    return out_g, d1, d2
