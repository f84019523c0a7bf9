"""Learning dynamics: the online-SGD ODEs, the simulation kernel, population GD.

* ``OnlineODE``: right-hand side evaluations per second of the compiled closed-form
  ODEs against the same equations in NumPy (broadcast over all I4 quadruples: the
  fast way to write them in NumPy). Every solve_ivp step costs a fixed number of
  evaluations, so the ratio is the ratio of ODE steps per second.
* ``OnlineSimulation``: SGD steps per second of ``fh.online_sgd`` against one rank-1
  update per step (BLAS dger on the same W1, nothing else: the memory limit of the
  update), against drawing the Ni Gaussians of x plus that update (the limit of a
  step with a fresh sample: the draw dominates), and against a plain NumPy loop of
  the same step.
* ``PopulationGD``: exact population GD at Ni = 1e6, K = M = 4, 1e4 steps (span
  coordinates after one SVD).

Run ``python -m bench.bench_online`` for one table of ratios measured in one run.
"""
import math
import time

import numpy as np

import fasthess as fh


def _erf_pairs(omega):
    d = 1.0 + np.diag(omega)
    a = 2 / np.pi / np.sqrt(np.outer(d, d) - omega ** 2)
    c = -a * omega / d[:, None]
    G = 2 / np.pi * np.arcsin(omega / np.sqrt(np.outer(d, d)))
    return a, c, G


def _i4_erf_numpy(omega, K):
    """I4[j, k, u, v] for all student j, k and units u, v (broadcast, nn2pp's formula)."""
    n = omega.shape[0]
    j, k, u, v = np.meshgrid(np.arange(K), np.arange(K), np.arange(n), np.arange(n),
                             indexing="ij")
    c = {(p, q): omega[a, b] for p, a in enumerate((j, k, u, v))
         for q, b in enumerate((j, k, u, v))}
    lam4 = (1 + c[0, 0]) * (1 + c[1, 1]) - c[0, 1] ** 2
    lam0 = (lam4 * c[2, 3] - c[1, 2] * c[1, 3] * (1 + c[0, 0]) - c[0, 2] * c[0, 3] * (1 + c[1, 1])
            + c[0, 1] * c[0, 2] * c[1, 3] + c[0, 1] * c[0, 3] * c[1, 2])
    lam1 = (lam4 * (1 + c[2, 2]) - c[1, 2] ** 2 * (1 + c[0, 0]) - c[0, 2] ** 2 * (1 + c[1, 1])
            + 2 * c[0, 1] * c[0, 2] * c[1, 2])
    lam2 = (lam4 * (1 + c[3, 3]) - c[1, 3] ** 2 * (1 + c[0, 0]) - c[0, 3] ** 2 * (1 + c[1, 1])
            + 2 * c[0, 1] * c[0, 3] * c[1, 3])
    return 4 / np.pi ** 2 / np.sqrt(lam4) * np.arcsin(lam0 / np.sqrt(lam1 * lam2))


def numpy_rhs(omega, K, w2, beta, lr, lr2):
    """The closed-form erf right-hand side (no noise, no weight decay) in NumPy."""
    a, c, G = _erf_pairs(omega)
    S = w2.T @ beta
    D = (np.sum(S * c[:K], axis=1)[:, None] * omega[:K]) + (S * a[:K]) @ omega
    T4 = np.einsum("ju,kv,jkuv->jk", S, S, _i4_erf_numpy(omega, K))
    dQ = -lr * (D[:, :K] + D[:, :K].T) + lr * lr * T4
    dR = -lr * D[:, K:]
    dW2 = -lr2 * beta @ G[:, :K]
    return np.concatenate([dQ.ravel(), dR.ravel(), dW2.ravel()])


def _state(K, seed=0):
    student = fh.TwoLayerNet.random(50, K, rng=seed)
    teacher = fh.TwoLayerNet.random(50, K, rng=seed + 1)
    W = np.concatenate([student.w1, teacher.w1])
    omega = np.ascontiguousarray(W @ W.T)
    w2 = np.ascontiguousarray(student.w2)
    beta = np.ascontiguousarray(np.concatenate([student.w2, -teacher.w2], axis=1))
    return omega, w2, beta


def _best(f, repeat=5, number=None):
    """Best time per call over ``repeat`` rounds of ``number`` calls."""
    if number is None:
        t0 = time.perf_counter()
        f()
        number = max(1, int(0.05 / max(time.perf_counter() - t0, 1e-7)))
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            f()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


class OnlineODE:
    params = [2, 4, 8]
    param_names = ["K"]

    def setup(self, K):
        from fasthess._kernels.activation import ERF
        from fasthess._kernels.online import rhs_closed

        self.omega, self.w2, self.beta = _state(K)
        self.K = K
        self.out = np.empty(K * K + K * K + K)
        self.kernel = lambda: rhs_closed(ERF, self.omega, K, self.w2, self.beta, 1.0, 1.0,
                                         0.0, 0.0, True, self.out)
        self.numpy = lambda: numpy_rhs(self.omega, K, self.w2, self.beta, 1.0, 1.0)
        self.kernel()
        assert np.allclose(self.out, self.numpy(), rtol=1e-12, atol=1e-14)

    def time_rhs_kernel(self, K):
        self.kernel()

    def time_rhs_numpy(self, K):
        self.numpy()

    def track_speedup_vs_numpy(self, K):
        return _best(self.numpy) / _best(self.kernel)

    track_speedup_vs_numpy.unit = "x"


class OnlineODEIntegration:
    """The whole ODE of the plateau figure (K = M = 2, alpha 0 .. 300, rtol 1e-10)."""

    def setup(self):
        self.teacher = fh.TwoLayerNet.random(100, 2, rng=0)
        self.student = fh.TwoLayerNet.random(100, 2, rng=1)
        fh.online_sgd_ode(self.student, 1.0, teacher=self.teacher, lr=1.0)

    def time_ode_to_300(self):
        fh.online_sgd_ode(self.student, 300.0, teacher=self.teacher, lr=1.0)


def numpy_sgd(w1, w2, w1t, w2t, lr, steps, rng):
    """The plain NumPy loop of one online SGD step (erf), for comparison."""
    from scipy.special import erf

    n_in = w1.shape[1]
    for _ in range(steps):
        x = rng.standard_normal(n_in)
        h, ht = w1 @ x, w1t @ x
        g = erf(h / math.sqrt(2))
        r = w2 @ g - w2t @ erf(ht / math.sqrt(2))
        d = math.sqrt(2 / math.pi) * np.exp(-0.5 * h * h) * (w2.T @ r)
        w1 -= (lr / n_in) * np.outer(d, x)
        w2 -= (lr / n_in) * np.outer(r, g)


class OnlineSimulation:
    params = [1000, 10_000, 100_000]
    param_names = ["n_in"]
    steps = 2000

    def setup(self, n_in):
        from scipy.linalg.blas import dger

        self.teacher = fh.TwoLayerNet.random(n_in, 2, rng=0)
        self.student = fh.TwoLayerNet.random(n_in, 2, rng=1)
        fh.online_sgd(self.student, 2, teacher=self.teacher, lr=1.0, rng=0)
        # Fortran order: dger updates its matrix in place only when it is contiguous so
        self.a = np.asfortranarray(self.student.w1.T.copy())
        self.x = np.random.default_rng(0).standard_normal(n_in)
        self.d = np.ones(2)
        self.dger = lambda: dger(-1e-3, self.x, self.d, a=self.a, overwrite_a=True)

    def time_kernel(self, n_in):
        fh.online_sgd(self.student, self.steps, teacher=self.teacher, lr=1.0,
                      record_every=self.steps, rng=0)

    def track_steps_per_second(self, n_in):
        return self.steps / _best(lambda: self.time_kernel(n_in), repeat=3, number=1)

    def track_fraction_of_rank1_update(self, n_in):
        """Kernel steps/s over dger steps/s (1 = as fast as the update alone)."""
        per_step = _best(lambda: self.time_kernel(n_in), repeat=3, number=1) / self.steps
        return _best(self.dger) / per_step

    def track_fraction_of_draw_plus_update(self, n_in):
        """Kernel steps/s over the steps/s of drawing x (NumPy's Generator into a buffer)
        plus one dger: the limit of any step that needs a fresh Gaussian sample."""
        rng = np.random.default_rng(0)

        def limit():
            rng.standard_normal(out=self.x)
            self.dger()

        per_step = _best(lambda: self.time_kernel(n_in), repeat=3, number=1) / self.steps
        return _best(limit) / per_step

    def track_speedup_vs_numpy_loop(self, n_in):
        w1, w2 = self.student.w1.copy(), self.student.w2.copy()
        rng = np.random.default_rng(0)
        t_np = _best(lambda: numpy_sgd(w1, w2, self.teacher.w1, self.teacher.w2, 1.0, 200, rng),
                     repeat=3, number=1) / 200
        per_step = _best(lambda: self.time_kernel(n_in), repeat=3, number=1) / self.steps
        return t_np / per_step


class PopulationGD:
    """Exact population GD, Ni = 1e6, K = M = 4, 1e4 steps (erf): seconds."""

    timeout = 600
    number = 1
    repeat = 1

    def setup(self):
        self.teacher = fh.TwoLayerNet.random(1_000_000, 4, rng=0)
        self.student = fh.TwoLayerNet.random(1_000_000, 4, rng=1)
        small_t, small_s = fh.TwoLayerNet.random(5, 4, rng=0), fh.TwoLayerNet.random(5, 4, rng=1)
        fh.gradient_descent(small_s, fh.POPULATION, 0.5, 2, teacher=small_t)

    def time_population_gd(self):
        fh.gradient_descent(self.student, fh.POPULATION, 0.5, 10_000, teacher=self.teacher,
                            record_every=100)


def main():
    rows = []
    for K in OnlineODE.params:
        b = OnlineODE()
        b.setup(K)
        rows.append(f"ODE right-hand side, erf K = M = {K}: kernel {1e6 * _best(b.kernel):.1f} us, "
                    f"NumPy {1e6 * _best(b.numpy):.1f} us, speedup "
                    f"{b.track_speedup_vs_numpy(K):.1f}x")
    b = OnlineODEIntegration()
    b.setup()
    rows.append(f"online_sgd_ode K = M = 2 to alpha 300 (rtol 1e-10): "
                f"{_best(b.time_ode_to_300, repeat=3, number=1):.3f} s")
    for n_in in OnlineSimulation.params:
        b = OnlineSimulation()
        b.setup(n_in)
        rows.append(f"online_sgd Ni = {n_in}, K = M = 2: {b.track_steps_per_second(n_in):,.0f} "
                    f"steps/s; fraction of one dger per step "
                    f"{b.track_fraction_of_rank1_update(n_in):.2f}, of a draw of x plus one dger "
                    f"{b.track_fraction_of_draw_plus_update(n_in):.2f}; vs NumPy loop "
                    f"{b.track_speedup_vs_numpy_loop(n_in):.1f}x")
    b = PopulationGD()
    b.setup()
    t0 = time.perf_counter()
    b.time_population_gd()
    rows.append(f"population GD Ni = 1e6, K = M = 4, 1e4 steps: "
                f"{time.perf_counter() - t0:.2f} s (SVD of the 8 x 1e6 rows included)")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
