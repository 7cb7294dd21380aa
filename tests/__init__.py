"""The test suite: one folder per package (ARCHITECTURE.md, "Packages"); fixtures in conftest.py."""
