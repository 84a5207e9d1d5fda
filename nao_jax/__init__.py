"""nao_jax: Neural Architecture Optimization in JAX/Flax.

Subpackages: ``spaces`` (search spaces), ``controller`` (the NAO encoder,
predictor and decoder), ``strategies`` (ask/tell search strategies),
``evaluators`` (tables, supernet, child training), ``models`` (child networks
and the supernet), ``training`` (data-parallel training). Entry points:
``python -m nao_jax.main --config=configs/<experiment>.py --workdir=DIR`` and
``python -m nao_jax.report --workdir=DIR``.
"""

__version__ = "0.1.0"
