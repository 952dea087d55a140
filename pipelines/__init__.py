"""Runnable data commands, ``python -m pipelines.<name>`` from the repository root.

Each module here only starts the ``main`` of its library module in
``flax_musicvae.pipelines`` (the installed code); this folder is not installed.
"""
