"""The package version, in a module of its own so that modules below the ``vsynth`` package can read it
without importing the package's public face (which imports them: the API)."""

__version__ = "0.2.0.dev0"
