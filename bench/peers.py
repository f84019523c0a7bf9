"""Autodiff peers for the side-by-side comparison: jax.hessian and torch.func.hessian.

They live here, in the repository's benchmark folder, so that the fasthess package
never imports an autodiff framework. ``python -m bench.compare --peers`` and
``bench/update_readme.py`` pass this module to ``bench.harness``; each
builder returns None when its framework is not installed.
"""


def _peer_loss(net, X, asarray, g, total):
    """The loss L(theta) written in an autodiff framework's array namespace."""
    Xa = asarray(X)
    Yt = asarray(net.forward(X))
    d1 = net.w1.size

    def loss(theta):
        w1 = theta[:d1].reshape(net.w1.shape)
        w2 = theta[d1:].reshape(net.w2.shape)
        r = g(Xa @ w1.T) @ w2.T - Yt
        return 0.5 * total(r * r) / Xa.shape[0]

    return loss


def jax_route(net, X):
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax.scipy.special import erf

    acts = {"erf": lambda z: erf(z / jnp.sqrt(2.0)), "tanh": jnp.tanh, "linear": lambda z: z,
            "quadratic": lambda z: z + z * z, "relu": lambda z: jnp.maximum(z, 0.0)}
    g = acts.get(net.activation.name)
    if g is None:
        return None
    hess = jax.jit(jax.hessian(_peer_loss(net, X, jnp.asarray, g, jnp.sum)))
    theta = jnp.asarray(net.parameters())
    return lambda: hess(theta).block_until_ready()


def torch_route(net, X):
    try:
        import torch
        from torch.func import hessian
    except ImportError:
        return None
    acts = {"erf": lambda z: torch.erf(z / 2.0**0.5), "tanh": torch.tanh,
            "linear": lambda z: z, "quadratic": lambda z: z + z * z, "relu": torch.relu}
    g = acts.get(net.activation.name)
    if g is None:
        return None
    theta = torch.from_numpy(net.parameters())
    h = hessian(_peer_loss(net, X, torch.from_numpy, g, torch.sum))
    return lambda: h(theta)



PEERS = {"jax": jax_route, "torch": torch_route}
