"""Exploration timing: a style edit, a mask edit, a first upscale and `samples` throughput (batch 16), per preset.

Random weights (the timing does not depend on them), one held-out procedural face as input.

    python benchmarks/explore.py [--json] [--presets demo celeba_8x] [--threads 2] [--device cpu] [--samples 64]
                                 [--precision fp32 bf16]

Targets with the demo model on 2 CPU cores: a style edit under 100 ms (stretch 50 ms), 64 samples under 3 s
(stretch 1.5 s). Heavy presets (generator width 512) sample `--heavy-samples` images and report the rate.
Samples are timed at `--batch-size` (16), the median of `--sample-reps` runs, and at
`deepsee.explore.default_batch_size` when that differs.
Besides wall time it reports the process CPU time: on a machine shared with other jobs, the CPU time of a
1-thread run is the better estimate of an idle core. With several threads on a busy machine set
OMP_WAIT_POLICY=PASSIVE, or spinning OpenMP threads make everything several times slower.
"""
from __future__ import annotations
import argparse, json, os, platform, statistics, sys, time
import numpy as np
import torch
from deepsee.core import downsample
from deepsee.data import procedural_face, to_tensor
from deepsee.explore import (random_model, semantic_cache, upscale, samples, sample, close_mouth, encode_style,
                             project_consistent, default_batch_size)


def _sync(device: torch.device):
    if device.type == 'cuda': torch.cuda.synchronize(device)


CPU_TIMES: dict = {}


def timed(fn, device, reps: int, warmup: int = 1, key: str | None = None) -> float:
    "Median wall time of `fn()` in seconds; the median process CPU time goes to CPU_TIMES[key] (a proxy on a busy machine)."
    for _ in range(warmup): fn()
    _sync(device)
    ts, cs = [], []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        fn(); _sync(device)
        ts.append(time.perf_counter() - t); cs.append(time.process_time() - c)
    if key: CPU_TIMES[key] = statistics.median(cs)
    return statistics.median(ts)


def bench(name: str, device: torch.device, reps: int, n_samples: int, batch_size: int, bf16: bool = False,
          sample_reps: int = 3) -> dict:
    model = random_model(name, seed=0, device=device)
    c = model.cfg
    img, lab = procedural_face(c.hr_size, 1234)
    mask = torch.from_numpy(lab.astype(np.int64))[None].to(device)
    lr = downsample(to_tensor(img)[None], c.factor).to(device)
    style = encode_style(model, lr, mask)
    styles = iter(sample(style, 1000, 0.2, 0))
    sem = semantic_cache(model, mask)
    r = dict(preset=name, device=str(device), threads=torch.get_num_threads(), bf16=bf16,
             params_generator=sum(p.numel() for p in model.generator.parameters()), hr_size=c.hr_size)
    # a style edit: one new style matrix, the semantic branch cached for the unchanged mask
    r['style_edit_ms'] = 1000 * timed(lambda: upscale(model, lr, mask, style=next(styles)[None], semantic=sem, bf16=bf16), device, reps,
                                      key='style_edit')
    # a mask edit: close the mouth, then rerun the generator with its semantic branch (style kept)
    r['mask_edit_ms'] = 1000 * timed(lambda: upscale(model, lr, close_mouth(mask), style=style, bf16=bf16), device, reps, key='mask_edit')
    if model.segmenter is not None:   # from scratch: segmenter mask + LR style + generator
        r['first_upscale_ms'] = 1000 * timed(lambda: upscale(model, lr, bf16=bf16), device, reps)
    warm = samples(model, lr, min(batch_size, n_samples), 0.2, seed=1, batch_size=batch_size, mask=mask, style=style, bf16=bf16)
    _sync(device)
    runs = []
    for _ in range(sample_reps):   # the median of a few runs (one run is at the mercy of the machine's other jobs)
        t, cpu = time.perf_counter(), time.process_time()
        out = samples(model, lr, n_samples, 0.2, seed=0, batch_size=batch_size, mask=mask, style=style, bf16=bf16)
        _sync(device)
        runs.append((time.perf_counter() - t, time.process_time() - cpu))
    dt, cpu = statistics.median(r_[0] for r_ in runs), statistics.median(r_[1] for r_ in runs)
    r.update(samples_n=n_samples, batch_size=batch_size, samples_s=dt, samples_per_s=n_samples / dt,
             samples_64_s=64 * dt / n_samples, samples_64_s_min=64 * min(r_[0] for r_ in runs) / n_samples,
             samples_64_s_all=[64 * r_[0] / n_samples for r_ in runs])
    r.update(cpu_style_edit_ms=1000 * CPU_TIMES['style_edit'], cpu_mask_edit_ms=1000 * CPU_TIMES['mask_edit'],
             cpu_samples_64_s=64 * cpu / n_samples)
    auto = default_batch_size(model)
    if auto != batch_size:   # the default batch size, when it differs
        t, cpu = time.perf_counter(), time.process_time()
        samples(model, lr, n_samples, 0.2, seed=0, mask=mask, style=style, bf16=bf16)
        _sync(device)
        dt, cpu = time.perf_counter() - t, time.process_time() - cpu
        r.update(auto_batch_size=auto, auto_samples_64_s=64 * dt / n_samples, cpu_auto_samples_64_s=64 * cpu / n_samples)
    r['project_16_ms'] = 1000 * timed(lambda: project_consistent(out.image[:16], lr, c.factor), device, max(1, reps // 2))
    del warm
    return r


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--json', action='store_true', help='print one JSON object')
    p.add_argument('--presets', nargs='+', default=['demo', 'celeba_8x'])
    p.add_argument('--threads', type=int, default=2, help='torch CPU threads (the targets are for 2 cores)')
    p.add_argument('--device', default='cpu')
    p.add_argument('--samples', type=int, default=64, help='samples for light presets')
    p.add_argument('--heavy-samples', type=int, default=16, help='samples for presets with a 512-wide generator')
    p.add_argument('--batch-size', type=int, default=16)
    p.add_argument('--reps', type=int, default=5)
    p.add_argument('--sample-reps', type=int, default=3, help='timed runs of the N samples (the median is reported)')
    p.add_argument('--precision', nargs='+', default=['fp32'], choices=['fp32', 'bf16'],
                   help='fp32 and/or bf16 autocast (fast on GPUs and CPUs with AMX)')
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    results = []
    for name in a.presets:
        from deepsee.core import preset
        heavy = preset(name).generator.width >= 256
        n = a.heavy_samples if heavy else a.samples
        for prec in a.precision:
            results.append(bench(name, device, max(1, a.reps // 2) if heavy else a.reps, n, a.batch_size, prec == 'bf16',
                                 1 if heavy else a.sample_reps))
            if not a.json:
                r = results[-1]
                print(f"{r['preset'] + (' bf16' if r['bf16'] else ''):>15} on {r['device']} ({r['threads']} threads): style edit {r['style_edit_ms']:.0f} ms, "
                      f"mask edit {r['mask_edit_ms']:.0f} ms" +
                      (f", first upscale {r['first_upscale_ms']:.0f} ms" if 'first_upscale_ms' in r else '') +
                      f", {r['samples_n']} samples in {r['samples_s']:.2f} s ({r['samples_per_s']:.1f}/s; 64 in "
                      f"{r['samples_64_s']:.2f} s, median of {len(r['samples_64_s_all'])}, best {r['samples_64_s_min']:.2f} s), projection of 16: {r['project_16_ms']:.0f} ms; process CPU time: style edit "
                      f"{r['cpu_style_edit_ms']:.0f} ms, mask edit {r['cpu_mask_edit_ms']:.0f} ms, 64 samples {r['cpu_samples_64_s']:.1f} s" +
                      (f"; default batch size {r['auto_batch_size']}: 64 samples in {r['auto_samples_64_s']:.1f} s "
                       f"(CPU time {r['cpu_auto_samples_64_s']:.1f} s)" if 'auto_batch_size' in r else ''), flush=True)
    info = dict(torch=torch.__version__, python=platform.python_version(), cpu_count=os.cpu_count(),
                load_avg=os.getloadavg()[0] if hasattr(os, 'getloadavg') else None)
    if a.json: print(json.dumps(dict(info=info, results=results)))
    else: print(f"torch {info['torch']}, {info['cpu_count']} CPUs, load average {info['load_avg']:.1f}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
