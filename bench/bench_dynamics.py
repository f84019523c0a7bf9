"""Gradient descent near the optimum: steps per second of the Numba inner loop."""
import time

import fasthess as fh

from .common import ACTIVATIONS, SIZES, problem


class GradientDescent:
    params = (ACTIVATIONS, SIZES)
    param_names = ["activation", "n"]
    unit = "steps per second"
    steps = 200

    def setup(self, activation, n):
        self.teacher, self.X = problem(activation, n, "2D")
        self.student = fh.perturb(self.teacher, 1e-3, rng=1)
        fh.gradient_descent(self.student, self.X[:8], lr=0.1, steps=2, teacher=self.teacher)

    def time_gradient_descent_200_steps(self, activation, n):
        fh.gradient_descent(self.student, self.X, lr=0.1, steps=self.steps,
                            teacher=self.teacher)

    def track_steps_per_second(self, activation, n):
        t0 = time.perf_counter()
        fh.gradient_descent(self.student, self.X, lr=0.1, steps=self.steps,
                            teacher=self.teacher)
        return self.steps / (time.perf_counter() - t0)
