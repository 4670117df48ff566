"""Finds the `aisle` subpackages folder by folder; everything else is in pyproject.toml."""

from setuptools import find_packages, setup

FOLDERS = {"embed": "aisle.embed", "index": "aisle.index", "service": "aisle.service", "training": "aisle.training"}

packages = ["aisle"]
for folder, package in FOLDERS.items():
    packages += [package] + [f"{package}.{sub}" for sub in find_packages(where=folder)]

setup(packages=packages)
