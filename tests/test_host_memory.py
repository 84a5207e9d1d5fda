"""``host_memory.reuse_freed_memory``: XLA:CPU's large buffers stop page-faulting on every call."""

import json
import platform
import subprocess
import sys

import pytest

# Calls a jitted op whose 41 MB output glibc would mmap afresh for every call,
# and prints the page faults per call after 25 (the heap first grows by one
# output per call for 6-11 calls, 4 runs, until it holds enough free blocks for
# the order in which the outputs are freed). ``sys.argv[1]``: whether to call
# ``reuse_freed_memory`` first.
PROGRAM = """
import json, resource, sys
from nao_jax import host_memory
applied = host_memory.reuse_freed_memory() if sys.argv[1] == "1" else False
import jax, jax.numpy as jnp
scale = jax.jit(lambda x: x * 1.5 + 1.0)
x = jnp.ones((500, 32, 32, 20), jnp.float32)
for _ in range(25):
  jax.block_until_ready(scale(x))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
  jax.block_until_ready(scale(x))
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5
print(json.dumps(dict(applied=applied, faults=faults, pages=x.size * 4 // 4096)))
"""


def run(reuse: bool) -> dict:
  out = subprocess.run([sys.executable, "-c", PROGRAM, "1" if reuse else "0"], check=True,
                       capture_output=True, text=True, env={"JAX_PLATFORMS": "cpu"}).stdout
  return json.loads(out.splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_reused_memory_makes_repeated_calls_fault_no_pages():
  reused = run(reuse=True)
  assert reused["applied"]
  # Without it each call faults up to every page of its output (10,000 with
  # 4 KiB pages; fewer where the kernel backs the mapping with huge pages).
  assert reused["faults"] < 0.01 * reused["pages"], reused
