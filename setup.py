"""Generates the gRPC stubs from protos/ whenever the package is built or installed."""

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.egg_info import egg_info


def _generate() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from protos.generate import generate

    generate()


class BuildPyWithProtos(build_py):
    def run(self) -> None:
        _generate()
        super().run()


class EggInfoWithProtos(egg_info):
    def run(self) -> None:
        _generate()
        super().run()


setup(cmdclass={"build_py": BuildPyWithProtos, "egg_info": EggInfoWithProtos})
