"""Gradient-based one-shot search: architecture parameters trained with the network.

* ``mixed``: DARTS' continuous relaxation of the ``nasnet`` (ws5) and ``nb201``
  spaces: mixed-op networks, architecture parameters and their discretisation.
* ``darts``: the DARTS search (first or second order), its ``darts`` job and
  ``search(config, workdir)`` for the NAO-WS pipeline's re-ranking and final training.
"""
