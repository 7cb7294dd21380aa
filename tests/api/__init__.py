"""Tests of the package this folder is named after (ARCHITECTURE.md, "Packages")."""
