"""Training-iteration benchmark: seconds per iteration (one generator step + one discriminator step) and peak memory.

    python benchmarks/train_step.py [--json] [--presets celeba_8x:4,tiny:4] [--device cpu,cuda] [--warmup 1 --iters 2]

Each (preset, device) runs in its own process through `deepsee.training.Trainer.train_step`, i.e. the real
iteration: style encoder (LR or HR, alternating as in training), generator with noise, two-scale discriminator
on fake + real, hinge + 10 x feature matching + 10 x VGG19 perceptual (random VGG weights: same cost as the real
ones), Adam steps for both sides, schedulers. bf16 autocast on CUDA (`--amp bf16`: on the CPU too; `off`: float32
everywhere). `peak_mem_mib` is the peak RSS (CPU) or CUDA max allocated above the state after building the networks
and the batch. `--tensor-peak` adds `peak_tensor_mib`: the peak bytes of live tensors over all the steps (warmup
included), weights, Adam moments and gradients included, counted by a dispatch mode (its overhead, small next to
the convolutions, is in the timings); on the CPU that is what
`torch.cuda.max_memory_allocated` reports for the same step on a GPU (without the CUDA context, cuDNN workspaces
and allocator rounding), which sizes GPU training without a GPU (see the end). `g_fwd_bwd_s` times the
generator side alone (style encoder + generator forward + backward of a mean), the figure the research code
needs 38.7 s for at batch 4 for the 8x model on this kind of CPU. `gflops` (forward + backward of everything, on the
plain styled-map path) and `roofline_ratio` = time / (gflops / conv GFLOP/s of one 512->512 conv, best layout, same
run, in the step's precision) say how close to the hardware each runs.

    python benchmarks/train_step.py --presets celebamaskhq_32x:2 --grad-checkpointing --amp bf16 --tensor-peak --no-flops
"""
from __future__ import annotations
import argparse, contextlib, json, os, re, statistics, sys, tempfile, time
from common import conv_gflops_per_s, peak_rss_mib, reset_peak, rss_mib, run_isolated, sync, tensor_peak_mode


def _g_forward(tr, b, src):
    "The generator side's forward (style encoder + generator, with noise) on batch `b`, style from `src`."
    return tr.srnet(b['lr'], b['labels'], *src[:2], source=src[2], delta=0.2, style_gen=tr.noise_gen, noise_gen=tr.noise_gen)


def _plain_flops(tr, b, src) -> tuple[float, float]:
    "FLOPs (forward + backward, counted on the plain styled-map path) of one training iteration and of the G side."
    import copy, torch
    from torch.utils.flop_counter import FlopCounterMode
    from deepsee.fast import set_modulation
    state = copy.deepcopy({'m': tr.model.state_dict(), 'd': tr.D.state_dict(), 'og': tr.opt_g.state_dict(),
                           'od': tr.opt_d.state_dict(), 'step': tr.step})
    set_modulation(tr.model, 'reference')
    with FlopCounterMode(display=False) as fc: tr.train_step(b)
    with FlopCounterMode(display=False) as fg:
        with tr.autocast():
            out = _g_forward(tr, b, src)
        out.float().mean().backward()
    total, g_side = fc.get_total_flops(), fg.get_total_flops()
    if tr.grad_checkpointing:   # not the recomputed forward of the checkpointed blocks: the plain count of the math
        with torch.no_grad(), FlopCounterMode(display=False) as fr:
            with tr.autocast():
                _g_forward(tr, b, src)
        again = sum(sum(v.values()) for k, v in fr.get_flop_counts().items() if re.search(r'generator\.blocks\.\d+$', k))
        total, g_side = total - again, g_side - again
    set_modulation(tr.model, 'fused')
    tr.model.load_state_dict(state['m']); tr.D.load_state_dict(state['d'])
    tr.opt_g.load_state_dict(state['og']); tr.opt_d.load_state_dict(state['od']); tr.step = state['step']
    return total, g_side


def run_one(name: str, batch: int, device: str, warmup: int, iters: int, vgg: bool, threads: int | None,
            ckpt: bool = False, flops: bool = True, amp: str = 'auto', tensor_peak: bool = False) -> dict:
    import torch
    if threads: torch.set_num_threads(threads)
    from deepsee.core import preset
    from deepsee.training import Trainer
    from deepsee.losses import VGG19Features
    cfg = preset(name)
    with tempfile.TemporaryDirectory() as d:
        tr = Trainer(cfg, f'synthetic:{max(batch, 2)}', d, max_steps=1000, no_vgg=True, batch_size=batch, device=device, grad_checkpointing=ckpt,
                     progress=False, n_val=0, tensorboard=False, amp=amp)
        with tr.autocast(): precision = 'bf16' if torch.is_autocast_enabled(tr.device.type) else 'fp32'   # the Trainer's choice
        if vgg: torch.manual_seed(0); tr.vgg = VGG19Features(pretrained=False).to(tr.device)
        b = torch.utils.data.default_collate([tr.train_ds[i] for i in range(batch)])
        b = {k: v.to(tr.device) for k, v in b.items() if isinstance(v, torch.Tensor)}
        base = rss_mib(); reset_peak()
        if device.startswith('cuda'): torch.cuda.reset_peak_memory_stats(); base_cuda = torch.cuda.memory_allocated() / 2**20
        # the tensors alive before the first step (weights, buffers, the batch); Adam moments and gradients appear in it
        static = sum(t.numel() * t.element_size() for m in (tr.model, tr.D, tr.vgg, tr.ema) if m is not None
                     for t in [*m.parameters(), *m.buffers()]) + sum(v.numel() * v.element_size() for v in b.values())
        counter = tensor_peak_mode() if tensor_peak else contextlib.nullcontext()
        times = []
        with counter:
            for i in range(warmup + iters):
                sync(device); t = time.perf_counter(); tr.train_step(b); sync(device)
                if i >= warmup: times.append(time.perf_counter() - t)
        # the generator side alone: forward + backward
        src = (b['lr'], b['labels'], 'lr')
        sync(device); t = time.perf_counter()
        with tr.autocast():
            out = _g_forward(tr, b, src)
        out.float().mean().backward(); sync(device)
        g_time = time.perf_counter() - t
        if device.startswith('cuda'): peak = torch.cuda.max_memory_allocated() / 2**20 - base_cuda
        else: peak = peak_rss_mib() - base
        flops, g_flops = _plain_flops(tr, b, src) if flops else (float('nan'), float('nan'))   # after the peak
        conv = conv_gflops_per_s(device, dtype=precision)
        tr.close()
    it = statistics.mean(times)
    tensors = dict(peak_tensor_mib=round((static + counter.peak) / 2**20, 1), static_tensor_mib=round(static / 2**20, 1)) \
        if tensor_peak else {}
    return dict(preset=name, batch=batch, device=device, sec_per_it=it, sec_per_it_all=times,
                gflops=flops / 1e9, conv_gflops_per_s=conv, roofline_ratio=it / (flops / 1e9 / conv),
                g_fwd_bwd_gflops=g_flops / 1e9, g_fwd_bwd_roofline_ratio=g_time / (g_flops / 1e9 / conv),
                g_fwd_bwd_s=g_time, grad_checkpointing=ckpt, peak_mem_mib=round(peak, 1), vgg=vgg, threads=torch.get_num_threads(),
                autocast=precision, load_avg_1m=os.getloadavg()[0], **tensors)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--json', action='store_true', help='print JSON')
    p.add_argument('--presets', default='celeba_8x:4,tiny:4', help='name:batch,...')
    p.add_argument('--device', default=None, help="comma-separated devices (default: cpu, plus cuda when present)")
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--iters', type=int, default=2)
    p.add_argument('--no-vgg', action='store_true', help='leave out the perceptual loss')
    p.add_argument('--grad-checkpointing', action='store_true', help='recompute each ResBlock in the backward pass')
    p.add_argument('--no-flops', action='store_true', help='skip the plain-path FLOP count (slow at 16x / 32x; with\n'
                   '--grad-checkpointing the recomputed forward is left out of the count)')
    p.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s choice)')
    p.add_argument('--amp', default='auto', choices=['auto', 'bf16', 'off'], help="the Trainer's mixed precision ('auto': bf16\n"
                   "autocast on CUDA, float32 on the CPU; 'bf16': also on the CPU)")
    p.add_argument('--tensor-peak', action='store_true', help='also count the peak bytes of live tensors over the steps\n'
                   '(the figure torch.cuda.max_memory_allocated gives on a GPU: a CPU run sizes a GPU run)')
    p.add_argument('--_one', help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._one:
        name, batch = a._one.split(':')
        print(json.dumps(run_one(name, int(batch), a.device, a.warmup, a.iters, not a.no_vgg, a.threads,
                                    a.grad_checkpointing, not a.no_flops, a.amp, a.tensor_peak))); return 0
    if a.device is None:
        import torch
        devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    else: devices = a.device.split(',')
    out = {}
    for dev in devices:
        for spec in a.presets.split(','):
            cmd = ['--_one', spec, '--device', dev, '--warmup', str(a.warmup), '--iters', str(a.iters)]
            if a.no_vgg: cmd.append('--no-vgg')
            if a.grad_checkpointing: cmd.append('--grad-checkpointing')
            if a.no_flops: cmd.append('--no-flops')
            if a.threads: cmd += ['--threads', str(a.threads)]
            cmd += ['--amp', a.amp] + (['--tensor-peak'] if a.tensor_peak else [])
            res = run_isolated(__file__, cmd)
            key = f"{res['preset']}_b{res['batch']}_{dev}" + ('' if a.amp == 'auto' else f'_{a.amp}')
            out[key] = res
            if not a.json:
                print(f"{key:<22} {res['sec_per_it']:>8.3f} s/it (G+D, {res['gflops']:.0f} GFLOP plain, roofline ratio "
                      f"{res['roofline_ratio']:.2f})  G fwd+bwd {res['g_fwd_bwd_s']:.3f} s (ratio {res['g_fwd_bwd_roofline_ratio']:.2f})  "
                      f"peak +{res['peak_mem_mib']:.0f} MiB" + (f" (tensors {res['peak_tensor_mib']:.0f} MiB)" if a.tensor_peak else '') + f"  threads {res['threads']}  load {res['load_avg_1m']:.1f}", flush=True)
    if a.json: print(json.dumps(out, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
