"""biostrata's C++ kernels (``boost.cpp`` beside this file), built on first use with the machine's C++
compiler by :func:`torch.utils.cpp_extension.load` and kept in torch's extension cache
(``$TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``), so later processes load them in
a moment. The first build takes about half a minute.

:func:`kernels` gives the built module, or None where they cannot be built (no compiler, a failed
build, or ``BIOSTRATA_NATIVE=0`` in the environment); the callers then use torch operations, which
give the same results more slowly. The reason is warned once per process.
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings
from pathlib import Path

SOURCE = Path(__file__).with_name("boost.cpp")
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


@functools.cache
def kernels() -> object | None:
    """The built kernels as torch operators (``torch.ops.biostrata``), or None (with one warning naming
    why) where they cannot be built."""
    if os.environ.get(SWITCH, "1") == "0":
        return None
    import torch
    from torch.utils.cpp_extension import load

    flags = _isa_flags()
    # the source's hash and place in the name: a build is never reused for another version of the source,
    # and two versions or two checkouts (torch's build file names the source's path) each keep their own
    # instead of rebuilding over each other
    key = SOURCE.read_bytes() + f"{' '.join(flags)} openmp {SOURCE.resolve()}".encode()
    digest = hashlib.sha1(key).hexdigest()[:12]
    name = f"biostrata_boost_{digest}"
    try:
        # -fopenmp: at::parallel_for is OpenMP in torch's CPU builds, and serial in code compiled without it
        cflags = ["-O3", "-fopenmp", *flags]
        load(name, [str(SOURCE)], extra_cflags=cflags, extra_ldflags=["-fopenmp"], is_python_module=False)
        return torch.ops.biostrata
    except Exception as error:  # no compiler, no ninja, a failed build: fall back, do not fail the run
        warnings.warn(
            f"biostrata's C++ kernels ({SOURCE.name}) could not be built ({_reason(error)}); the Lorentz batch norm runs "
            f"on torch operations, with the same results, more slowly. Install a C++ compiler (g++) to build "
            f"them, or set {SWITCH}=0 to silence this.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


def usable(x) -> bool:
    """Whether the kernels take tensor ``x``: on the CPU, float32 or float64, and built."""
    import torch

    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and kernels() is not None
