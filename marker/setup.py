"""Builds the probe library into the wheel as libprofilemate_marker.abi3.so.

It is a plain shared library loaded with ctypes (no Python C API), declared
as a limited-API extension only so that setuptools compiles it with the
platform's C compiler and one wheel (tag cp310-abi3) serves CPython 3.10+.
"""
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildProbeLibrary(build_ext):
    def get_export_symbols(self, ext):
        # No PyInit_ function: the library is not a Python module.
        return []


setup(
    ext_modules=[
        Extension(
            "profilemate_marker.libprofilemate_marker",
            sources=["profilemate_marker/probes.c"],
            extra_compile_args=["-fvisibility=hidden"],
            py_limited_api=True,
        )
    ],
    cmdclass={"build_ext": BuildProbeLibrary},
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
