"""biostrata's C++ kernels (``boost.cpp``, the Lorentz batch norm, and ``conv.cpp``, the Lorentz
convolution's time term, beside this file), built on first use with the machine's C++ compiler by
:func:`torch.utils.cpp_extension.load` and kept in torch's extension cache (``$TORCH_EXTENSIONS_DIR``, by
default ``~/.cache/torch_extensions``), so later processes load them in a moment. The first build takes
about half a minute.

:func:`kernels` gives the built module, or None where they cannot be built (no compiler, a failed
build, or ``BIOSTRATA_NATIVE=0`` in the environment); the callers then use torch operations, which
give the same results more slowly. The reason is warned once per process.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
import warnings
from pathlib import Path

SOURCES = [Path(__file__).with_name(name) for name in ("boost.cpp", "conv.cpp")]
#: what a build depends on: the sources and the header they include
BUILT_FROM = [*SOURCES, Path(__file__).with_name("common.h")]
#: set to 0 to use torch operations only (no build)
SWITCH = "BIOSTRATA_NATIVE"


def _isa_flags() -> list[str]:
    """Vector instructions for the compiler, from what torch found on this CPU: the build is cached per
    flag set, so a cache shared by machines of different CPUs holds one build each."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    if capability.startswith("AVX"):  # AVX2 and AVX512: the AVX2 set is enough for these loops
        # ATen's vector types (at::vec, with torch's own SLEEF for sinh, cosh, log1p) in their AVX2 form
        return ["-mavx2", "-mfma", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"]
    return []


def _reason(error: Exception) -> str:
    """The line of a failed build that says why: the compiler's complaint, not ninja's commands."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    skip = ("Error building extension", "[", "FAILED:", "ninja:")
    useful = [line for line in lines if not line.startswith(skip) and " -o " not in line]
    return useful[0] if useful else (lines[0] if lines else type(error).__name__)


#: seconds after which a build's lock file is taken for one a killed build left behind (a build takes 20-60 s)
STALE_LOCK_S = 300


def _clear_stale_lock(name: str) -> None:
    """Wait while another process builds ``name`` (its lock file exists), and remove the lock once it is
    older than :data:`STALE_LOCK_S`: torch's builder waits without end or message while a lock exists, and a
    build killed midway (SIGKILL, out of memory) leaves its lock behind, so every later run would hang at its
    first batch norm."""
    from torch.utils.cpp_extension import _get_build_directory

    lock = Path(_get_build_directory(name, verbose=False)) / "lock"
    while True:
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return
        if age > STALE_LOCK_S:
            warnings.warn(f"{lock}: left {age / 60:.0f} min ago by a build that did not finish; removed", stacklevel=3)
            lock.unlink(missing_ok=True)
            return
        time.sleep(1.0)


@functools.cache
def kernels() -> object | None:
    """The built kernels as torch operators (``torch.ops.biostrata``: stats, centre, rescale, grad_positions,
    grad_sums, grad_input of the batch norm, time_term and time_term_backward of the convolution; ``nn.fused``
    calls them), or None (with one warning naming why) where they cannot be built."""
    if os.environ.get(SWITCH, "1") == "0":
        return None
    import torch
    from torch.utils.cpp_extension import load

    flags = _isa_flags()
    # the name holds what the build depends on: the source, its place (torch's build file names its path), the
    # flags, torch's version and the compiler (torch's headers are system includes, which the build's
    # dependency tracking leaves out: without the version a torch upgrade would load a build made for the old
    # one). So a build is never reused for anything else, and two checkouts never rebuild over each other.
    places = " ".join(str(source.resolve()) for source in BUILT_FROM)
    key = f"{' '.join(flags)} openmp {places} {torch.__version__} {os.environ.get('CXX', 'c++')}"
    code = b"".join(source.read_bytes() for source in BUILT_FROM)
    name = "biostrata_kernels_" + hashlib.sha1(code + key.encode()).hexdigest()[:12]
    _clear_stale_lock(name)
    try:
        # -fopenmp: at::parallel_for is OpenMP in torch's CPU builds, and serial in code compiled without it
        cflags = ["-O3", "-fopenmp", *flags]
        load(
            name,
            [str(source) for source in SOURCES],
            extra_cflags=cflags,
            extra_ldflags=["-fopenmp"],
            is_python_module=False,
        )
        return torch.ops.biostrata
    except Exception as error:  # no compiler, no ninja, a failed build: fall back, do not fail the run
        warnings.warn(
            f"biostrata's C++ kernels ({', '.join(source.name for source in SOURCES)}) could not be built "
            f"({_reason(error)}); the Lorentz batch norm and convolution run on torch operations, with the same "
            f"results, more slowly. Install a C++ compiler (g++) to build them, or set {SWITCH}=0 to silence this.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


def usable(x) -> bool:
    """Whether the kernels take tensor ``x``: on the CPU, float32 or float64, and built."""
    import torch

    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and kernels() is not None


def chosen(x, native_kernels: bool | None = None) -> bool:
    """Whether a layer (the Lorentz batch norm, the Lorentz convolution's time term) runs on the kernels for
    input ``x``: ``native_kernels`` None: where they take it (:func:`usable`); True: yes, an error
    (:class:`~biostrata.errors.ParameterError`) where they cannot; False: no (torch operations)."""
    if native_kernels is False:
        return False
    if usable(x):
        return True
    if native_kernels:
        from biostrata.errors import ParameterError

        built = "built" if kernels() is not None else "not built (see the warning above)"
        raise ParameterError(
            "native_kernels",
            f"native_kernels=True: biostrata's C++ kernels take float32 or float64 tensors on the CPU, and they are "
            f"{built}; got {x.dtype} on {x.device}. Give native_kernels=None to use them where they can be.",
        )
    return False
