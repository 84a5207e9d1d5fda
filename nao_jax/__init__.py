"""nao_jax: Neural Architecture Optimization in JAX/Flax.

Subpackages: ``nao_jax.spaces`` (search spaces). Entry point:
``python -m nao_jax.main --config=configs/<experiment>.py --workdir=DIR``.
"""

__version__ = "0.1.0"
