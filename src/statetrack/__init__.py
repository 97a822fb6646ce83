"""statetrack: linear RNNs whose transition eigenvalues may reach -1, so that they can track state."""

__version__ = "0.1.0"
