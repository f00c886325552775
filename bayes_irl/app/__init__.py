"""The application layer: the ``bayes-irl`` command line and plots.

It may import every other layer (core, :mod:`bayes_irl.models`, :mod:`bayes_irl.inference`);
nothing imports it.
"""
