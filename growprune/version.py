"""The package version, in a module of its own so that any part of growprune can read it without
importing the package's top level (``import growprune`` from inside growprune is an upward import).

pyproject.toml reads the version from here (``[tool.setuptools.dynamic]``), so there is one place
to change it.
"""

__version__ = "0.1.0"
