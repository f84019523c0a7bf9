"""TwoLayerNet: the teacher/student model y(x) = w2 @ g(w1 @ x), no biases."""
from __future__ import annotations

import numpy as np

from ._validation import (check_dtype, check_float_array, check_inputs, check_instance,
                          check_int, check_real, check_rng)
from .activations import Activation, get_activation
from .data import is_population

__all__ = ["TwoLayerNet"]


class TwoLayerNet:
    """A two-layer network y(x) = w2 @ g(w1 @ x), no biases: a teacher or a student.

    The network owns its weights: they are copied and made read-only, so that
    changing the caller's arrays later cannot change the network.
    The flat parameter vector is ``theta = concat(w1.ravel(), w2.ravel())``
    (C order), of length D = Nh*Ni + No*Nh; every Hessian uses this order.

    Parameters
    ----------
    w1 : array_like, shape (n_hidden, n_in)
        First-layer weights, float32 or float64 (integers are upcast to float64).
    w2 : array_like, shape (n_out, n_hidden)
        Second-layer weights; a 1-d array is taken as one output.
    activation : str or Activation, default "erf"
        A name of :data:`fasthess.ACTIVATION_NAMES` or an activation object
        (:class:`~fasthess.Polynomial`, :class:`~fasthess.Quadratic`,
        :class:`~fasthess.CustomActivation`).

    Attributes
    ----------
    w1, w2 : ndarray
        The weights, read-only, both of the network's dtype.
    activation : Activation
        The activation g.

    Examples
    --------
    >>> import fasthess as fh
    >>> net = fh.TwoLayerNet.random(4, 3, n_out=2, activation="erf", rng=0)
    >>> net.n_params
    18
    >>> net.forward(fh.gaussian_inputs(5, 4, rng=1)).shape
    (5, 2)
    >>> fh.TwoLayerNet([[1.0, 0.0]], [2.0], "linear")
    TwoLayerNet(n_in=2, n_hidden=1, n_out=1, activation='linear', dtype=float64)
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
               rng=None, dtype=np.float64):
        """Draw a network with Gaussian weights (the default teacher).

        w1 ~ N(0, w1_std^2) and w2 ~ N(0, w2_std^2), entrywise and independent;
        the defaults keep pre-activations and outputs O(1).

        Parameters
        ----------
        n_in, n_hidden, n_out : int
            Ni, Nh, No >= 1 (No defaults to 1).
        activation : str or Activation, default "erf"
            As in :class:`TwoLayerNet`.
        w1_std : float, optional
            Standard deviation of w1, > 0; default 1 / sqrt(n_in).
        w2_std : float, optional
            Standard deviation of w2, > 0; default 1 / sqrt(n_hidden).
        rng : None, int or numpy.random.Generator, optional
            The random source (SPEC 7): None draws fresh entropy, an int seeds a
            new Generator (the same network every time), a Generator is used as is.
        dtype : float32 or float64, default float64
            The dtype of the weights (drawn in float64, then cast).

        Returns
        -------
        TwoLayerNet
            w1 is drawn before w2 from the same stream.

        Examples
        --------
        >>> import fasthess as fh
        >>> net = fh.TwoLayerNet.random(30, 20, rng=0)
        >>> net.shape, round(float(net.w1.std() * 30 ** 0.5), 1)
        ((30, 20, 1), 1.0)
        """
        n_in = check_int(n_in, "n_in", minimum=1)
        n_hidden = check_int(n_hidden, "n_hidden", minimum=1)
        n_out = check_int(n_out, "n_out", minimum=1)
        s1 = 1.0 / np.sqrt(n_in) if w1_std is None else check_real(w1_std, "w1_std",
                                                                     positive=True)
        s2 = 1.0 / np.sqrt(n_hidden) if w2_std is None else check_real(w2_std, "w2_std",
                                                                         positive=True)
        dt = check_dtype(dtype)
        generator = check_rng(rng)
        w1 = (s1 * generator.standard_normal((n_hidden, n_in))).astype(dt)
        w2 = (s2 * generator.standard_normal((n_out, n_hidden))).astype(dt)
        return cls(w1, w2, activation)

    @classmethod
    def from_parameters(cls, theta, like: "TwoLayerNet"):
        """Build a network from a flat parameter vector, shaped like another.

        Parameters
        ----------
        theta : array_like, shape (D,)
            ``concat(w1.ravel(), w2.ravel())``, as :meth:`parameters` returns it.
        like : TwoLayerNet
            Gives the shapes and the activation.

        Returns
        -------
        TwoLayerNet
            With the shapes and activation of ``like`` and the weights of ``theta``.

        Examples
        --------
        >>> import fasthess as fh
        >>> net = fh.TwoLayerNet.random(3, 2, rng=0)
        >>> twin = fh.TwoLayerNet.from_parameters(net.parameters(), like=net)
        >>> bool((twin.w1 == net.w1).all() and (twin.w2 == net.w2).all())
        True
        """
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
        """Ni, the input dimension (``w1.shape[1]``).

        Examples
        --------
        >>> import fasthess as fh
        >>> fh.TwoLayerNet.random(4, 3, rng=0).n_in
        4
        """
        return self.w1.shape[1]

    @property
    def n_hidden(self) -> int:
        """Nh, the number of hidden units (``w1.shape[0]``).

        Examples
        --------
        >>> import fasthess as fh
        >>> fh.TwoLayerNet.random(4, 3, rng=0).n_hidden
        3
        """
        return self.w1.shape[0]

    @property
    def n_out(self) -> int:
        """No, the number of outputs (``w2.shape[0]``).

        Examples
        --------
        >>> import fasthess as fh
        >>> fh.TwoLayerNet.random(4, 3, n_out=2, rng=0).n_out
        2
        """
        return self.w2.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        """The sizes (n_in, n_hidden, n_out).

        Examples
        --------
        >>> import fasthess as fh
        >>> fh.TwoLayerNet.random(4, 3, n_out=2, rng=0).shape
        (4, 3, 2)
        """
        return (self.n_in, self.n_hidden, self.n_out)

    @property
    def n_params(self) -> int:
        """D = Nh*Ni + No*Nh, the number of parameters (the side of the Hessian).

        Examples
        --------
        >>> import fasthess as fh
        >>> fh.TwoLayerNet.random(4, 3, n_out=2, rng=0).n_params   # 3*4 + 2*3
        18
        """
        return self.w1.size + self.w2.size

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the weights, float32 or float64 (the default working precision).

        Examples
        --------
        >>> import numpy as np, fasthess as fh
        >>> fh.TwoLayerNet.random(4, 3, rng=0, dtype=np.float32).dtype
        dtype('float32')
        """
        return self.w1.dtype

    def parameters(self) -> np.ndarray:
        """Return the flat parameter vector theta (a copy).

        Returns
        -------
        ndarray, shape (D,)
            ``concat(w1.ravel(), w2.ravel())``, the order of every Hessian.

        Examples
        --------
        >>> import fasthess as fh
        >>> net = fh.TwoLayerNet([[1.0, 2.0]], [3.0], "linear")
        >>> net.parameters()
        array([1., 2., 3.])
        """
        return np.concatenate([self.w1.ravel(), self.w2.ravel()])

    def astype(self, dtype) -> "TwoLayerNet":
        """Return the network with its weights cast to ``dtype``.

        Parameters
        ----------
        dtype : float32 or float64
            The new dtype.

        Returns
        -------
        TwoLayerNet
            ``self`` when the dtype is already ``dtype``, else a cast copy.

        Examples
        --------
        >>> import numpy as np, fasthess as fh
        >>> fh.TwoLayerNet.random(4, 3, rng=0).astype(np.float32).dtype
        dtype('float32')
        """
        dt = check_dtype(dtype)
        if dt == self.dtype:
            return self
        return TwoLayerNet(self.w1.astype(dt), self.w2.astype(dt), self.activation)

    # ------------------------------------------------------------------ evaluation
    def forward(self, X) -> np.ndarray:
        """Evaluate the outputs y = g(X w1^T) w2^T.

        Also available as ``net(X)``.

        Parameters
        ----------
        X : array_like, shape (P, n_in)
            Inputs, one sample per row; validated (integers and booleans are
            upcast to float64).

        Returns
        -------
        ndarray, shape (P, n_out)
            In X's dtype (float64 for integer X).

        Examples
        --------
        >>> import fasthess as fh
        >>> net = fh.TwoLayerNet([[1.0, 0.0], [0.0, 1.0]], [[1.0, -1.0]], "quadratic")
        >>> net.forward([[1, 2]])            # (1 + 1) - (2 + 4); integers are upcast
        array([[-4.]])
        """
        return self.outputs(self.check_inputs(X))

    __call__ = forward

    def outputs(self, X: np.ndarray) -> np.ndarray:
        """Evaluate :meth:`forward` on inputs that are already validated.

        No checks are repeated: ``X`` must be what :meth:`check_inputs` returns.

        Parameters
        ----------
        X : ndarray, shape (P, n_in)
            Validated inputs, float32 or float64.

        Returns
        -------
        ndarray, shape (P, n_out)
            In X's dtype.

        Examples
        --------
        >>> import fasthess as fh
        >>> net = fh.TwoLayerNet.random(3, 2, rng=0)
        >>> X = net.check_inputs(fh.gaussian_inputs(4, 3, rng=1))
        >>> bool((net.outputs(X) == net.forward(X)).all())
        True
        """
        pre = X @ self.w1.T.astype(X.dtype, copy=False)
        act = activation_values(self.activation, pre)
        out = act @ self.w2.T.astype(X.dtype, copy=False)
        if not np.all(np.isfinite(out)):
            raise ValueError(f"X: the outputs of this network overflow in {X.dtype} "
                             f"(activation {self.activation.name!r}, |X| up to "
                             f"{float(np.max(np.abs(X))):.3g}); reduce the weight or input "
                             "scale, or use float64")
        return out

    def check_inputs(self, X, name: str = "X", dtype=None, copy: bool = False) -> np.ndarray:
        """Validate inputs for this network.

        X must have shape (P, n_in) and be finite and real. Integers and booleans
        are upcast to float64, as NumPy and SciPy do; complex, object and masked
        arrays are refused. A network passed where X goes (the argument order of
        fasthess is ``(net, X, ...)`` with the teacher a keyword) is refused with
        a TypeError that says so.

        Parameters
        ----------
        X : array_like, shape (P, n_in)
            The inputs to check.
        name : str, default "X"
            How error messages call the argument.
        dtype : float32 or float64, optional
            Cast to this dtype; default: X's own floating dtype.
        copy : bool, default False
            Always return a new array (for results that keep X).

        Returns
        -------
        ndarray, shape (P, n_in)
            C-contiguous, float32 or float64.

        Raises
        ------
        TypeError
            X is not an array of real numbers (or is a network).
        ValueError
            X has the wrong shape, is empty or holds NaN or inf.

        Examples
        --------
        >>> import fasthess as fh
        >>> net = fh.TwoLayerNet.random(2, 3, rng=0)
        >>> net.check_inputs([[1, 2], [3, 4]]).dtype
        dtype('float64')
        """
        if isinstance(X, TwoLayerNet):
            raise TypeError(
                f"{name} is a TwoLayerNet, not inputs: fasthess takes (net, X, ...) with the "
                "teacher as a keyword, e.g. fh.loss(student, X, teacher=teacher) or "
                "fh.gradient_descent(student, X, lr, steps, teacher=teacher)")
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


def activation_values(activation: Activation, pre: np.ndarray) -> np.ndarray:
    """g of the pre-activations (P x Nh), without the derivatives (forward passes)."""
    out_g = np.empty_like(pre)
    if activation.code >= 0:
        from ._kernels.activation import apply_activation_value

        apply_activation_value(activation.code, activation.kernel_coeffs(pre.dtype), pre, out_g)
    else:
        activation.apply(pre, out_g, np.empty_like(pre), np.empty_like(pre))
    return out_g
