"""The catalogue layer: what knows ``manual_backprop``. The independent forward (the network
rebuilt from the catalogue records' primitive forms), the hypothesis strategies, and the matrix
the command line runs. Readable without the core's internals: it uses the public check
functions and the records."""
