"""The exact reduction of the population Hessian to the span of the weights (THEORY.md g).

With S = span(rows of the student's W1 and the teacher's W1*), r = dim S, every
pre-activation sees x only through its projection on S, so

    H_inf = H_S (+) (Bp (x) I_{Ni - r})

H_S the population Hessian of the same networks restricted to S (Ni' = r, first-layer
weights C = W1 Q for an orthonormal basis Q of S), and the Nh x Nh block

    Bp_jk = (W2^T W2)_jk E[g'(h_j) g'(h_k)] + delta_jk E[(y_s - y_t) . W2[:, j] g''(h_j)],

each of whose eigenvalues appears Ni - r times. Hence
rank(H_inf) = rank(H_S) + (Ni - r) rank(Bp).

Q is never formed: the population quantities depend on the rows only through their
Gram matrix G ((Nh + M) x (Nh + M), GEMMs with the weights as they are, no stacked
copy), and any C with C C^T = G serves (see :func:`_span_factor`). Memory: G and the
dense H_S; time O(Ni (Nh + M)^2) (BLAS) plus the eigensolves of H_S (order
Nh (r + No)) and of Bp (order Nh).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _config
from ._features import check_net
from .network import TwoLayerNet
from .population_hessian import dense_hessian, population_hessian
from .population_objective import population_teacher
from .gemm import gemm_into

__all__ = ["SpanReduction", "span_reduction", "span_rank", "reduced_spectrum",
           "reduced_modes"]


@dataclass(frozen=True, eq=False)
class SpanReduction:
    """The networks restricted to the span S of their first-layer rows.

    Attributes
    ----------
    rank : int
        r = dim S: the eigenvalues of the rows' Gram matrix above ``n eps`` times the
        largest, n = max(Ni, Nh + M).
    n_in : int
        Ni of the original networks.
    student, teacher : TwoLayerNet
        The networks with first-layer weights C = W1 Q (n_in = r); ``teacher`` None at
        the optimum.
    """

    rank: int
    n_in: int
    student: TwoLayerNet
    teacher: TwoLayerNet | None
    _unique: np.ndarray  # stacked rows kept (duplicates removed)
    _coords: np.ndarray  # Q = [rows kept]^T @ _coords, an orthonormal basis of S (Ni x r)

    @property
    def multiplicity(self) -> int:
        """Ni - r: how often each eigenvalue of Bp appears in H_inf."""
        return self.n_in - self.rank


def _gram(blocks):
    """The Gram matrix of the stacked rows, block by block (fasthess's GEMM in pieces,
    no stacked copy)."""
    sizes = [w.shape[0] for w in blocks]
    ends = np.cumsum([0] + sizes)
    G = np.empty((ends[-1], ends[-1]))
    for a, wa in enumerate(blocks):
        for b in range(a, len(blocks)):
            gemm_into(G[ends[a]:ends[a + 1], ends[b]:ends[b + 1]],
                      np.ascontiguousarray(wa, dtype=G.dtype),
                      np.ascontiguousarray(blocks[b], dtype=G.dtype), b_transposed=True,
                      beta=0.0)
            G[ends[b]:ends[b + 1], ends[a]:ends[a + 1]] = G[ends[a]:ends[a + 1],
                                                           ends[b]:ends[b + 1]].T
    return 0.5 * (G + G.T)


def _row(blocks, u):
    for w in blocks:
        if u < w.shape[0]:
            return w[u]
        u -= w.shape[0]
    raise IndexError(u)


def _duplicates(blocks, G):
    """first[u]: the first stacked row equal to row u (u itself if none)."""
    n = G.shape[0]
    first = np.arange(n)
    diag = np.diag(G)
    for u in range(1, n):
        for v in np.flatnonzero((diag[:u] == diag[u]) & (G[:u, u] == diag[u])):
            if first[v] == v and np.array_equal(_row(blocks, u), _row(blocks, v)):
                first[u] = v
                break
    return first


def _span_factor(blocks, n_in):
    """(C (n_all x r), r, unique, coords): C C^T = the Gram matrix of the stacked rows,
    r = their rank, ``unique`` the rows kept and Q = rows[unique]^T coords (Ni x r) an
    orthonormal basis of their span with rows Q = C (never formed here).

    The population quantities depend on the rows only through their Gram matrix, so
    any factor of it serves. From the eigendecomposition G = U Lambda U^T,
    C = U_r Lambda_r^{1/2}; eigenvalues below ``n eps lambda_max`` (n = max(Ni, n_all))
    count as zero: dropping them changes G by no more than its own round-off. Rows equal
    in the input (a student unit repeated, or equal to a teacher unit) get equal rows
    of C exactly, so their angle is 0, not the ~1e-8 that round-off in G would imply.
    """
    G = _gram(blocks)
    first = _duplicates(blocks, G)
    unique = np.flatnonzero(first == np.arange(first.size))
    lam, U = np.linalg.eigh(G[np.ix_(unique, unique)])
    n_all = G.shape[0]
    if lam.size == 0 or lam[-1] <= 0.0:
        return np.zeros((n_all, 0)), 0, unique, np.zeros((unique.size, 0))
    keep = lam > max(n_in, n_all) * np.finfo(np.float64).eps * lam[-1]
    r = int(np.count_nonzero(keep))
    root = np.sqrt(lam[keep])
    C_unique = U[:, keep] * root
    position = np.empty(n_all, dtype=np.int64)
    position[unique] = np.arange(unique.size)
    # Q = rows^T U_r Lambda_r^{-1/2}: Q^T Q = I and rows Q = C
    return C_unique[position[first]], r, unique, U[:, keep] / root


def span_reduction(net, teacher=None) -> SpanReduction:
    """Restrict ``net`` (and ``teacher``) to the span of their first-layer rows.

    Parameters
    ----------
    net : TwoLayerNet
        The student.
    teacher : TwoLayerNet or None
        None (or the student): the optimum, S = span of the student's rows.

    Returns
    -------
    SpanReduction

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> from fasthess.population_span import span_reduction
    >>> t = fh.TwoLayerNet.random(50, 3, rng=0)
    >>> red = span_reduction(fh.TwoLayerNet.random(50, 2, rng=1), t)
    >>> red.rank, red.student.shape, red.multiplicity
    (5, (5, 2, 1), 45)
    >>> s, s_red = fh.perturb(t, 0.2, rng=2), span_reduction(fh.perturb(t, 0.2, rng=2), t)
    >>> bool(np.isclose(fh.loss(s_red.student, fh.POPULATION, s_red.teacher),
    ...                 fh.loss(s, fh.POPULATION, t), rtol=1e-13))
    True
    """
    net = check_net(net)
    teacher = population_teacher(net, teacher)
    blocks = [np.asarray(net.w1, dtype=np.float64)]
    if teacher is not None:
        blocks.append(np.asarray(teacher.w1, dtype=np.float64))
    C, r, unique, coords = _span_factor(blocks, net.n_in)
    nh = net.n_hidden
    act = net.activation
    student = TwoLayerNet(C[:nh], np.asarray(net.w2, dtype=np.float64), act)
    red_teacher = None
    if teacher is not None:
        red_teacher = TwoLayerNet(C[nh:], np.asarray(teacher.w2, dtype=np.float64), act)
    return SpanReduction(r, net.n_in, student, red_teacher, unique, coords)


def span_rank(net, teacher=None) -> int:
    """r = dim span(rows of the student's and the teacher's W1) (see :class:`SpanReduction`).

    Examples
    --------
    >>> import fasthess as fh
    >>> from fasthess.population_span import span_rank
    >>> span_rank(fh.TwoLayerNet.random(10, 3, rng=0))
    3
    """
    return span_reduction(net, teacher).rank


def reduced_spectrum(red: SpanReduction, eigvalsh=None):
    """(values, multiplicities, solved_size) of H_inf from the reduction, ascending.

    values: eig(H_S) (each once) and eig(Bp) (each Ni - r times), float64;
    solved_size: the order of the largest matrix decomposed (that of H_S).
    ``eigvalsh(A)``: the eigenvalues of the symmetric A, which it may overwrite
    (default SciPy's eigh; :func:`fasthess.eigenvalues` passes its own dense solver).

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> from fasthess.population_span import reduced_spectrum, span_reduction
    >>> net = fh.TwoLayerNet.random(8, 2, rng=0)
    >>> values, mult, n = reduced_spectrum(span_reduction(net))
    >>> int(mult.sum()) == net.n_params, n
    (True, 6)
    >>> full = np.linalg.eigvalsh(fh.hessian(net, fh.POPULATION))
    >>> bool(np.allclose(np.repeat(values, mult), full, rtol=0, atol=1e-14))
    True
    """
    import scipy.linalg

    if eigvalsh is None:
        def eigvalsh(A):
            return scipy.linalg.eigh(A, eigvals_only=True, driver=_config.EIGH_DRIVER,
                                     overwrite_a=True, check_finite=False)

    ph = population_hessian(red.student, red.teacher, np.float64)
    H_S = dense_hessian(ph)
    # H_S is symmetric: its transpose is the same matrix in Fortran order (LAPACK in place)
    ev_s = np.asarray(eigvalsh(H_S.T), dtype=np.float64)
    del H_S
    Bp = np.array(ph.coefs.qa, dtype=np.float64)
    if ph.residual is not None:
        Bp[np.diag_indices_from(Bp)] += ph.residual.rho
    ev_b = np.linalg.eigvalsh(0.5 * (Bp + Bp.T))
    values = np.concatenate([ev_s, ev_b])
    mult = np.concatenate([np.ones(ev_s.size, dtype=np.int64),
                           np.full(ev_b.size, red.multiplicity, dtype=np.int64)])
    if red.multiplicity == 0:
        values, mult = ev_s, mult[:ev_s.size]
    order = np.argsort(values, kind="stable")
    return values[order], mult[order], ev_s.size


def reduced_modes(net, delta):
    """At the optimum ``net``: (lam, s), the eigenvalues of H_inf and the squared overlaps
    of ``delta`` (length D, theta order) with their eigenspaces, from the reduction.

    s_i = |V_i^T delta|^2 summed over the eigenspace of lam_i: for an eigenvalue of H_S
    its eigenvector in the span's coordinates (delta's w1 part projected, Delta1 Q); for
    an eigenvalue mu_a of Bp (eigenvector u_a) the eigenspace u_a (x) (complement of S),
    s = u_a^T (Delta1 Delta1^T - (Delta1 Q)(Delta1 Q)^T) u_a. Returns None when r = Ni.

    Examples
    --------
    >>> import numpy as np, fasthess as fh
    >>> from fasthess.population_span import reduced_modes
    >>> net = fh.TwoLayerNet.random(8, 2, rng=0)
    >>> delta = np.random.default_rng(1).standard_normal(net.n_params)
    >>> lam, s = reduced_modes(net, delta)
    >>> bool(np.isclose(np.sum(s), delta @ delta))
    True
    >>> H = fh.hessian(net, fh.POPULATION)
    >>> bool(np.isclose(np.sum(lam * s), delta @ H @ delta))
    True
    """
    red = span_reduction(net)
    if red.multiplicity == 0:
        return None
    nh, n_in = net.n_hidden, net.n_in
    d1 = nh * n_in
    delta = np.asarray(delta, dtype=np.float64)
    D1 = delta[:d1].reshape(nh, n_in)
    w1 = np.asarray(net.w1, dtype=np.float64)
    # Delta1 Q = (Delta1 rows[unique]^T) coords: one GEMM with W1, no Ni x r basis
    D1Q = (D1 @ w1[red._unique].T) @ red._coords
    ph = population_hessian(red.student, None, np.float64)
    lam_s, V_s = np.linalg.eigh(dense_hessian(ph))
    c_s = V_s.T @ np.concatenate([D1Q.ravel(), delta[d1:]])
    Bp = np.array(ph.coefs.qa, dtype=np.float64)
    mu, U = np.linalg.eigh(0.5 * (Bp + Bp.T))
    perp = D1 @ D1.T - D1Q @ D1Q.T
    s_perp = np.maximum(np.einsum("ja,jk,ka->a", U, perp, U), 0.0)
    return np.concatenate([lam_s, mu]), np.concatenate([c_s * c_s, s_perp])
