"""Builds the probe library into the wheel as libprofilemate_marker.abi3.so,
and the _fastcall extension that calls its functions.

The probe library is a plain shared library loaded with ctypes (no Python C
API), declared as a limited-API extension only so that setuptools compiles
it with the platform's C compiler and one wheel (tag cp310-abi3) serves
CPython 3.10+. _fastcall is a real limited-API extension; it is optional:
without Python's headers the wheel is built without it and the marker calls
the probes through ctypes (slower on a traced step, the same otherwise).
"""
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildProbeLibrary(build_ext):
    def get_export_symbols(self, ext):
        if ext.name.endswith("_fastcall"):
            return super().get_export_symbols(ext)
        # No PyInit_ function: the probe library is not a Python module.
        return []


setup(
    ext_modules=[
        Extension(
            "profilemate_marker.libprofilemate_marker",
            sources=["profilemate_marker/probes.c"],
            extra_compile_args=["-fvisibility=hidden"],
            py_limited_api=True,
        ),
        Extension(
            "profilemate_marker._fastcall",
            sources=["profilemate_marker/fastcall.c"],
            py_limited_api=True,
            optional=True,
        ),
    ],
    cmdclass={"build_ext": BuildProbeLibrary},
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
