"""Host memory for XLA:CPU: keep freed memory mapped and reuse it (opt-in).

XLA:CPU allocates the temporary buffer of every call (all intermediates of a
train step: 1.4 GiB for the supernet-size child network at batch 64) with
``posix_memalign``. glibc serves a block that large by a fresh ``mmap`` and
``munmap``s it on free, so every step page-faults its whole temporary buffer
again: 360,000 faults per step there, and about a fifth of the step's CPU time
goes to the kernel. ``reuse_freed_memory`` makes glibc serve every block from
its main heap (one arena, no ``mmap``) and never trim that heap, so the pages
stay mapped and the next step reuses them.

Measured on a 2-core CPU (``benchmarks/results/malloc.md``; the benchmarks'
``--reuse_malloc``): the supernet-size fixed child network trains at 46.9
instead of 32-33 images/s, NAONet-B at 9.3 instead of 6.9, and the supernet,
over 100 steps on the same archs, at 3.24 instead of 3.51 s/step; NAONet-A not
measurably faster. The costs, and why it is not the default: the process keeps
its peak heap (NAONet-A: 13.2 instead of 7.3 GiB peak RSS), and where frees
interleave with other allocations the heap grows by another temporary buffer
now and then (those 100 supernet steps: 4.3 -> 6.3 GiB by step 18, then flat).
A whole shrunk NAO-WS pipeline through ``nao_jax.main`` (supernet, scoring,
controller, re-ranked children) was not faster with it (954 vs 935 s) and
peaked at 6.7 instead of 4.8 GiB, so ``main`` does not call it.
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
