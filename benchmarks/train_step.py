"""Training-iteration benchmark: seconds per iteration (one generator step + one discriminator step) and peak memory.

    python benchmarks/train_step.py [--json] [--presets celeba_8x:4,tiny:4] [--device cpu,cuda] [--warmup 1 --iters 2]

Each (preset, device) runs in its own process through `deepsee.training.Trainer.train_step`, i.e. the real
iteration: style encoder (LR or HR, alternating as in training), generator with noise, two-scale discriminator
on fake + real, hinge + 10 x feature matching + 10 x VGG19 perceptual (random VGG weights: same cost as the real
ones), Adam steps for both sides, schedulers. bf16 autocast on CUDA. `peak_mem_mib` is the peak RSS (CPU) or
CUDA max allocated above the state after building the networks and the batch. `g_fwd_bwd_s` times the
generator side alone (style encoder + generator forward + backward of a mean), the figure the research code
needs 38.7 s for at batch 4 for the 8x model on this kind of CPU.
"""
from __future__ import annotations
import argparse, json, os, resource, statistics, subprocess, sys, tempfile, time


def _rss_mib() -> float:
    with open('/proc/self/statm') as f: return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def _sync(device: str):
    import torch
    if device.startswith('cuda'): torch.cuda.synchronize()


def run_one(name: str, batch: int, device: str, warmup: int, iters: int, vgg: bool, threads: int | None) -> dict:
    import torch
    if threads: torch.set_num_threads(threads)
    from deepsee.core import preset
    from deepsee.training import Trainer
    from deepsee.architecture import VGG19Features
    cfg = preset(name)
    with tempfile.TemporaryDirectory() as d:
        tr = Trainer(cfg, f'synthetic:{max(batch, 2)}', d, max_steps=1000, no_vgg=True, batch_size=batch, device=device,
                     progress=False, n_val=0, tensorboard=False)
        if vgg: torch.manual_seed(0); tr.vgg = VGG19Features(pretrained=False).to(tr.device)
        b = torch.utils.data.default_collate([tr.train_ds[i] for i in range(batch)])
        b = {k: v.to(tr.device) for k, v in b.items() if isinstance(v, torch.Tensor)}
        base = _rss_mib()
        if device.startswith('cuda'): torch.cuda.reset_peak_memory_stats(); base_cuda = torch.cuda.memory_allocated() / 2**20
        times = []
        for i in range(warmup + iters):
            _sync(device); t = time.perf_counter(); tr.train_step(b); _sync(device)
            if i >= warmup: times.append(time.perf_counter() - t)
        # the generator side alone: forward + backward
        src = (b['lr'], b['labels'], 'lr')
        _sync(device); t = time.perf_counter()
        with tr.autocast():
            out = tr.srnet(b['lr'], b['labels'], *src[:2], source=src[2], delta=0.2, style_gen=tr.noise_gen, noise_gen=tr.noise_gen)
        out.float().mean().backward(); _sync(device)
        g_time = time.perf_counter() - t
        if device.startswith('cuda'): peak = torch.cuda.max_memory_allocated() / 2**20 - base_cuda
        else: peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
        tr.close()
    return dict(preset=name, batch=batch, device=device, sec_per_it=statistics.mean(times), sec_per_it_all=times,
                g_fwd_bwd_s=g_time, peak_mem_mib=round(peak, 1), vgg=vgg, threads=torch.get_num_threads(),
                autocast='bf16' if device.startswith('cuda') else 'fp32', load_avg_1m=os.getloadavg()[0])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--json', action='store_true', help='print JSON')
    p.add_argument('--presets', default='celeba_8x:4,tiny:4', help='name:batch,...')
    p.add_argument('--device', default=None, help="comma-separated devices (default: cpu, plus cuda when present)")
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--iters', type=int, default=2)
    p.add_argument('--no-vgg', action='store_true', help='leave out the perceptual loss')
    p.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s choice)')
    p.add_argument('--_one', help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._one:
        name, batch = a._one.split(':')
        print(json.dumps(run_one(name, int(batch), a.device, a.warmup, a.iters, not a.no_vgg, a.threads))); return 0
    if a.device is None:
        import torch
        devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    else: devices = a.device.split(',')
    out = {}
    for dev in devices:
        for spec in a.presets.split(','):
            cmd = [sys.executable, __file__, '--_one', spec, '--device', dev, '--warmup', str(a.warmup), '--iters', str(a.iters)]
            if a.no_vgg: cmd.append('--no-vgg')
            if a.threads: cmd += ['--threads', str(a.threads)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode: print(r.stderr, file=sys.stderr); return r.returncode
            res = json.loads(r.stdout.strip().splitlines()[-1])
            key = f"{res['preset']}_b{res['batch']}_{dev}"
            out[key] = res
            if not a.json:
                print(f"{key:<22} {res['sec_per_it']:>8.3f} s/it (G+D)  G fwd+bwd {res['g_fwd_bwd_s']:.3f} s  "
                      f"peak +{res['peak_mem_mib']:.0f} MiB  threads {res['threads']}  load {res['load_avg_1m']:.1f}", flush=True)
    if a.json: print(json.dumps(out, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
