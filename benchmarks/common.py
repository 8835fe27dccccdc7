"""Helpers shared by the benchmark scripts: memory (current and peak RSS), device sync, the roofline's reference
convolution, procedural-face masks, and running one measurement in a process of its own."""
from __future__ import annotations
import json, os, resource, subprocess, sys, time


def rss_mib() -> float:
    with open('/proc/self/statm') as f: return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20

def reset_peak() -> None:
    "Reset the process's peak RSS (Linux VmHWM), so that a peak measures only what follows (not the FLOP count pass)."
    try:
        with open('/proc/self/clear_refs', 'w') as f: f.write('5')
    except OSError: pass

def peak_rss_mib() -> float:
    "Peak RSS since the last `reset_peak` (VmHWM), falling back to ru_maxrss."
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'): return int(line.split()[1]) / 1024
    except OSError: pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def conv_gflops_per_s(device: str, repeats: int = 5, dtype: str = 'fp32', layouts=('nchw', 'channels_last')) -> float:
    "Best achieved GFLOP/s of one 512->512 3x3 conv, batch 1, at 128x128 or 32x32, over the memory layouts."
    import torch
    best = 0.0
    dt = torch.bfloat16 if dtype == 'bf16' else torch.float32
    conv = torch.nn.Conv2d(512, 512, 3, padding=1).to(device, dt)
    for s, layout in [(s, l) for s in (128, 32) for l in layouts]:
        x = torch.randn(1, 512, s, s, device=device, dtype=dt)
        if layout == 'channels_last': x = x.contiguous(memory_format=torch.channels_last)
        flops = 2 * 512 * 512 * 9 * s * s
        with torch.no_grad():
            for _ in range(2): conv(x)
            ts = []
            for _ in range(repeats):
                sync(device); t = time.perf_counter(); conv(x); sync(device); ts.append(time.perf_counter() - t)
        best = max(best, flops / min(ts) / 1e9)
    return best

def sync(device: str) -> None:
    import torch
    if device.startswith('cuda'): torch.cuda.synchronize()

def face_labels(batch: int, size: int, device: str):
    "Label maps of `batch` procedural faces (seeds 1000..): region boundaries as in real masks."
    import numpy as np, torch
    from deepsee.data import procedural_face
    return torch.stack([torch.from_numpy(procedural_face(size, 1000 + i)[1].astype(np.int64)) for i in range(batch)]).to(device)

def run_isolated(script: str, args: list[str]) -> dict:
    "Run `script --_one ...` in a fresh process (clean peak memory, no state shared with other runs); its last JSON line."
    r = subprocess.run([sys.executable, script] + args, capture_output=True, text=True)
    if r.returncode:
        print(r.stderr, file=sys.stderr)
        raise SystemExit(r.returncode)
    return json.loads(r.stdout.strip().splitlines()[-1])

def tensor_peak_mode():
    """A dispatch mode that counts the bytes of live tensor storages created under it, and their peak: on the CPU,
    the figure `torch.cuda.max_memory_allocated` gives on a GPU for the same work (no CUDA context, no cuDNN
    workspace, no allocator rounding), so a CPU run can size a GPU run. `.peak`, `.current` in bytes."""
    import weakref, torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class TensorPeak(TorchDispatchMode):
        def __init__(self):
            super().__init__(); self.live, self.current, self.peak = {}, 0, 0

        def _free(self, key, n):
            self.live.pop(key, None); self.current -= n

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor) and t.device.type != 'meta':
                    st = t.untyped_storage(); key = st.data_ptr()
                    if key and key not in self.live:   # a new storage (views and in-place results share one)
                        n = st.nbytes(); self.current += n; self.peak = max(self.peak, self.current)
                        self.live[key] = weakref.ref(st, lambda _, k=key, n=n: self._free(k, n))
            return out
    return TensorPeak()
