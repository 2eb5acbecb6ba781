"""The core: evidence and policy. Reads a model only through the protocol, never imports
``manual_backprop``.

- ``protocol``: ``GradientModel``, what a model must (and may) offer;
- ``validate``: the argument validators every entry point shares;
- ``adapter``: a model seen through the protocol, with X and y fixed;
- ``tape``: the tape witness;
- ``fd``: the finite-difference witness (stencils, Richardson, error estimates, kinks);
- ``policy``: evidence per tensor in, a verdict per element and per tensor out;
- ``report``: the verdict's types (status enum, note codes, comparisons, the report).
"""
