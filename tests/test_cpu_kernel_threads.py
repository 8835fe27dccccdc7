"""The numba CPU kernel must leave torch's thread count alone. numba's OpenMP pool shares libgomp with torch and
resets its thread count when it starts, on the kernel's first call in a process; so the check runs in a fresh one."""
import os, subprocess, sys
import pytest

CODE = """
import torch
from deepsee.fast.kernel import kernel_ok
from deepsee.core import preset
from deepsee.model import DeepSEE
torch.set_num_threads(1)
m = DeepSEE(preset('tiny', lr_size=8, factor=4)).eval()
lab = torch.zeros(1, 32, 32, dtype=torch.long); lab[:, 8:24] = 1
with torch.no_grad():
    m.generator(torch.randn(1, 3, 8, 8), lab, torch.zeros(1, 19, m.cfg.encoder.style_dim))
    ok = kernel_ok(torch.zeros(1, 1, 1, 1).contiguous(memory_format=torch.channels_last))
print(ok, torch.get_num_threads())
"""


def test_first_kernel_call_keeps_torch_threads():
    pytest.importorskip('numba')
    r = subprocess.run([sys.executable, '-c', CODE], capture_output=True, text=True, env={**os.environ, 'OMP_NUM_THREADS': '2'})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ['True', '1'], r.stdout   # the kernel ran, and torch still uses the one thread it was given
