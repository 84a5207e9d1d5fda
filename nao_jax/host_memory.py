"""Host memory for XLA:CPU: keep freed memory mapped and reuse it (opt-in).

XLA:CPU allocates the temporary buffer of every call (all intermediates of a
train step, GiBs for a large network) with ``posix_memalign``. glibc serves a
block that large by a fresh ``mmap`` and ``munmap``s it on free, so every step
page-faults its whole temporary buffer again and much of the step's CPU time
goes to the kernel. ``reuse_freed_memory`` makes glibc serve every block from
its main heap (one arena, no ``mmap``) and never trim that heap, so the pages
stay mapped and the next step reuses them.

It speeds up some networks' train steps (the benchmarks' ``--reuse_malloc``)
but the process keeps its peak heap, which may grow by another temporary
buffer where frees interleave with other allocations, and a whole NAO-WS
pipeline was not faster with it, so ``main`` does not call it. Figures:
``benchmarks/results/malloc.md``.
"""

import ctypes
import platform

# mallopt(3) parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8


def reuse_freed_memory() -> bool:
  """Makes glibc's malloc keep and reuse freed memory (see the module docstring).

  Call it before JAX starts a backend: a thread that has already allocated keeps
  its own arena, where large blocks are still mapped and unmapped each time.
  Returns whether the settings took effect (``False`` on anything but glibc).
  """
  if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
    return False
  libc = ctypes.CDLL(None)
  settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))  # -1: never trim
  return all(libc.mallopt(option, value) == 1 for option, value in settings)
