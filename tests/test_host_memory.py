"""``host_memory.reuse_freed_memory``: XLA:CPU's large buffers stop page-faulting on every call."""

import json
import platform
import subprocess
import sys

import pytest

# After ``reuse_freed_memory``, calls a jitted op whose 41 MB output glibc would
# otherwise mmap afresh for every call, and prints the page faults per call in
# four windows of 5 calls after 25 (the heap first grows by one output per call
# for 6-11 calls, 4 runs, until it holds enough free blocks for the order in
# which the outputs are freed; on a loaded machine it has grown again once in a
# window after that, so the quietest window is compared).
PROGRAM = """
import json, resource
from nao_jax import host_memory
applied = host_memory.reuse_freed_memory()
import jax, jax.numpy as jnp
scale = jax.jit(lambda x: x * 1.5 + 1.0)
x = jnp.ones((500, 32, 32, 20), jnp.float32)
for _ in range(25):
  jax.block_until_ready(scale(x))
windows = []
for _ in range(4):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  for _ in range(5):
    jax.block_until_ready(scale(x))
  windows.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
print(json.dumps(dict(applied=applied, faults=min(windows), windows=windows,
                      pages=x.size * 4 // 4096)))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_reused_memory_makes_repeated_calls_fault_no_pages():
  out = subprocess.run([sys.executable, "-c", PROGRAM], check=True, capture_output=True,
                       text=True, env={"JAX_PLATFORMS": "cpu"}).stdout
  reused = json.loads(out.splitlines()[-1])
  assert reused["applied"]
  # Without it each call faults up to every page of its output (10,000 with
  # 4 KiB pages; fewer where the kernel backs the mapping with huge pages).
  assert reused["faults"] < 0.01 * reused["pages"], reused
