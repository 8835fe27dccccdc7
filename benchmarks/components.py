"""Style encoding and segmentation: latency, peak memory, FLOPs and roofline ratio per preset and batch.

    python benchmarks/components.py [--json] [--presets celeba_8x:1,celeba_8x:16] [--device cpu] [--dtype fp32|bf16]

Per (preset, batch), in its own process: the style encoder on the LR image (`style_lr`, the independent model's
test-time path) and on the HR image (`style_hr`, guided / training), and the segmenter (LR image -> HR label map,
the mask `deepsee upscale` predicts when none is given). Random weights (the cost does not depend on them), a
procedural face as input. `roofline_ratio` = latency / (FLOPs / conv GFLOP/s), the conv reference being the best
512->512 3x3 conv of `generator.py` measured in the same process; `peak_mem_mib` is the peak RSS (CUDA: max
allocated) above the state after building the networks and the inputs.
"""
from __future__ import annotations
import argparse, json, sys, time
from common import conv_gflops_per_s, face_labels, peak_rss_mib, reset_peak, rss_mib, run_isolated, sync


def run_one(name: str, batch: int, device: str, repeats: int, dtype: str) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from deepsee.core import preset, downsample
    from deepsee.architecture import StyleEncoder
    from deepsee.segmentation import Segmenter
    from deepsee.data import procedural_face, to_tensor
    cfg = preset(name)
    torch.manual_seed(0)
    enc, seg = StyleEncoder(cfg).to(device).eval(), Segmenter(cfg).to(device).eval()
    img, _ = procedural_face(cfg.hr_size, 1234)
    hr = to_tensor(img)[None].expand(batch, -1, -1, -1).contiguous().to(device)
    lr = downsample(hr, cfg.factor)
    labels = face_labels(batch, cfg.hr_size, device)
    conv = conv_gflops_per_s(device, dtype=dtype)
    amp = lambda: torch.autocast(torch.device(device).type, torch.bfloat16, enabled=dtype == 'bf16')
    jobs = {'style_lr': lambda: enc(lr, labels, 'lr'), 'style_hr': lambda: enc(hr, labels, 'hr'),
            'segmentation': lambda: seg(lr).argmax(1)}
    out = dict(preset=name, batch=batch, device=device, dtype=dtype, conv_gflops_per_s=conv, threads=torch.get_num_threads())
    for key, fn in jobs.items():
        with torch.no_grad(), amp():
            with FlopCounterMode(display=False) as fc: fn()
            sync(device)
            base = rss_mib(); reset_peak()
            if device.startswith('cuda'): torch.cuda.reset_peak_memory_stats(); base_cuda = torch.cuda.memory_allocated() / 2**20
            ts = []
            for _ in range(repeats):
                t = time.perf_counter(); fn(); sync(device); ts.append(time.perf_counter() - t)
        lat, gfl = min(ts), fc.get_total_flops() / 1e9
        peak = (torch.cuda.max_memory_allocated() / 2**20 - base_cuda if device.startswith('cuda')
                else peak_rss_mib() - base)
        out[key] = dict(latency_ms=lat * 1e3, latency_per_image_ms=lat * 1e3 / batch, gflops=gfl,
                        roofline_ratio=lat / (gfl / conv) if gfl else None, peak_mem_mib=round(max(peak, 0.0), 1))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--json', action='store_true')
    p.add_argument('--presets', default='celeba_8x:1,celeba_8x:16', help='name:batch,...')
    p.add_argument('--device', default='cpu')
    p.add_argument('--dtype', default='fp32', choices=['fp32', 'bf16'])
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--_one', help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._one:
        name, batch = a._one.split(':')
        print(json.dumps(run_one(name, int(batch), a.device, a.repeats, a.dtype))); return 0
    out = {}
    for spec in a.presets.split(','):
        res = run_isolated(__file__, ['--_one', spec, '--device', a.device, '--repeats', str(a.repeats), '--dtype', a.dtype])
        key = f"{res['preset']}_b{res['batch']}"
        out[key] = res
        if not a.json:
            for part in ('style_lr', 'style_hr', 'segmentation'):
                q = res[part]
                print(f"{key:<22} {part:<13} {q['latency_ms']:>8.1f} ms ({q['latency_per_image_ms']:.1f} ms/img)  "
                      f"{q['gflops']:.1f} GFLOP  roofline ratio {q['roofline_ratio']:.2f}  peak +{q['peak_mem_mib']:.0f} MiB",
                      flush=True)
    if a.json: print(json.dumps(out, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
