"""Generator forward benchmark: latency, peak memory, FLOPs and roofline ratio per preset.

    python benchmarks/generator.py [--json] [--presets celeba_8x:1,celeba_8x:8,celebamaskhq_32x:1] [--device cpu]

`gflops` counts the FLOPs of one forward on the *plain* path (styled-map convolutions, as the paper's network
computes them), so that our lookup path, which computes less, shows as a `roofline_ratio` below 1.
`roofline_ratio` = latency / (gflops / conv_gflops_per_s), where conv_gflops_per_s is the best throughput of a
single 512->512 3x3 conv (batch 1, 128x128 or 32x32, NCHW or channels_last, in the run's dtype) measured in the
same run. The mask is a procedural face's label map (`--mask face`, one face per batch item: the realistic case)
or uniform random labels (`--mask random`: every pixel on a region boundary, the worst case for the lookup path). Each preset runs in its own
process so that `peak_mem_mib` (peak RSS, or CUDA max allocated, above the state after building the model and
inputs) is not polluted by the others.
"""
from __future__ import annotations
import argparse, json, statistics, sys, time
from common import conv_gflops_per_s, face_labels, peak_rss_mib, reset_peak, rss_mib, run_isolated, sync

def plain_flops(G, lr, labels, style) -> float:
    "FLOPs of one forward with every NormBlock on the reference (plain convolution) path."
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from deepsee.fast import modulation
    with torch.no_grad(), modulation(G, 'reference'), FlopCounterMode(display=False) as fc: G(lr, labels, style)
    return fc.get_total_flops()

def run_one(name: str, batch: int, device: str, repeats: int, dtype: str, mask: str = 'face') -> dict:
    import torch
    from deepsee.core import preset
    from deepsee.architecture import Generator
    from deepsee.fast import set_modulation
    cfg = preset(name)
    torch.manual_seed(0)
    G = set_modulation(Generator(cfg).to(device).eval(), 'fused')   # as in a DeepSEE bundle
    lr = torch.rand(batch, 3, cfg.lr_size, cfg.lr_size, device=device) * 2 - 1
    labels = (face_labels(batch, cfg.hr_size, device) if mask == 'face' else
              torch.randint(0, 19, (batch, cfg.hr_size, cfg.hr_size), device=device))
    style = torch.rand(batch, 19, cfg.encoder.style_dim, device=device) * 2 - 1
    flops = plain_flops(G, lr[:1], labels[:1], style[:1]) * batch
    conv = conv_gflops_per_s(device, dtype=dtype)
    conv_nchw = conv_gflops_per_s(device, dtype=dtype, layouts=('nchw',))
    amp = torch.autocast(torch.device(device).type, torch.bfloat16, enabled=dtype == 'bf16')
    from torch.nn.utils import parametrize
    base = rss_mib(); reset_peak()
    if device.startswith('cuda'): torch.cuda.reset_peak_memory_stats(); base_cuda = torch.cuda.memory_allocated() / 2**20
    times = []
    with torch.no_grad(), parametrize.cached(), amp:
        n_warm = 1 if cfg.hr_size >= 512 and device == 'cpu' else 2
        for i in range(n_warm + repeats):
            sync(device); t = time.perf_counter(); G(lr, labels, style); sync(device)
            if i >= n_warm: times.append(time.perf_counter() - t)
    lat = statistics.median(times)
    if device.startswith('cuda'): peak = torch.cuda.max_memory_allocated() / 2**20 - base_cuda
    else: peak = peak_rss_mib() - base
    return dict(preset=name, batch=batch, device=device, dtype=dtype, latency_ms=lat * 1e3,
                latency_per_image_ms=lat * 1e3 / batch, peak_mem_mib=round(peak, 1), gflops=flops / 1e9,
                conv_gflops_per_s=conv, conv_nchw_gflops_per_s=conv_nchw, roofline_ratio=lat / (flops / 1e9 / conv),
                mask=mask, threads=torch.get_num_threads())

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--json', action='store_true')
    p.add_argument('--presets', default='celeba_8x:1,celeba_8x:8,celebamaskhq_32x:1', help='name:batch,...')
    p.add_argument('--device', default='cpu')
    p.add_argument('--dtype', default='fp32', choices=['fp32', 'bf16'])
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--mask', default='face', choices=['face', 'random'], help='procedural face masks or random labels')
    p.add_argument('--_one', help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._one:
        name, batch = a._one.split(':')
        print(json.dumps(run_one(name, int(batch), a.device, a.repeats, a.dtype, a.mask))); return 0
    out = {}
    for spec in a.presets.split(','):
        res = run_isolated(__file__, ['--_one', spec, '--device', a.device, '--repeats', str(a.repeats), '--dtype', a.dtype,
                                      '--mask', a.mask])
        key = res['preset'] if spec.endswith(':1') else f"{res['preset']}_b{res['batch']}"
        out[key] = res
        if not a.json:
            print(f"{key:<24} {res['latency_ms']:>9.0f} ms ({res['latency_per_image_ms']:.0f} ms/img)  "
                  f"peak +{res['peak_mem_mib']:.0f} MiB  {res['gflops']:.0f} GFLOP (plain)  "
                  f"conv {res['conv_gflops_per_s']:.0f} GFLOP/s  roofline ratio {res['roofline_ratio']:.2f}", flush=True)
    if a.json: print(json.dumps(out, indent=1))
    return 0

if __name__ == '__main__':
    sys.exit(main())
