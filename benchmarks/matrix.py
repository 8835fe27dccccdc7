"""The whole benchmark matrix in one run: generator forward, training step (forward + backward), style encoding,
segmentation and exploration, with FLOPs, roofline ratios and peak memory, written as one JSON file.

    python benchmarks/matrix.py --out benchmarks/results/cpu.json [--device cpu] [--dtype fp32] [--quick]
    python benchmarks/matrix.py --out benchmarks/results/cuda-bf16.json --device cuda --dtype bf16

Each part is one of the scripts next to this one, run with `--json` (each preset in its own process); the file
holds their outputs under `generator`, `train_step`, `train_step_ckpt` (16x and 32x, batch 1, gradient
checkpointing), `components`, `explore`, `train_step_bf16` (the training step under bf16 autocast) and
`train_32x_b2` (32x at batch 2 with checkpointing under bf16 autocast, with its peak of live tensor bytes: the
memory it needs on a GPU), plus the machine and the commands. `nbs/14_performance.ipynb`
renders every file in `benchmarks/results/` as the documentation's tables.
`--quick` runs the small presets only (a smoke test of the whole pipeline in about a minute).
"""
from __future__ import annotations
import argparse, datetime, json, os, platform, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))

PLANS = {   # part -> (script, args) for the full matrix and for --quick
    'full': {
        'generator': ('generator.py', ['--presets', 'celeba_8x:1,celeba_8x:8,celeba_8x:16,celeba_4x:1,celebamaskhq_16x:1,celebamaskhq_32x:1']),
        'train_step': ('train_step.py', ['--presets', 'celeba_8x:4,celeba_4x:4,celebamaskhq_8x:4,tiny:4']),
        # 512x512 outputs: batch 1 with gradient checkpointing (the recomputed forward is not in the FLOP count)
        'train_step_ckpt': ('train_step.py', ['--presets', 'celebamaskhq_16x:1,celebamaskhq_32x:1', '--grad-checkpointing',
                                              '--warmup', '0', '--iters', '1']),
        'components': ('components.py', ['--presets', 'celeba_8x:1,celeba_8x:16,celebamaskhq_32x:1']),
        'explore': ('explore.py', ['--presets', 'demo', 'celeba_8x', '--precision', 'fp32', 'bf16']),
        # training under bf16 autocast (on the CPU: `--amp bf16`), and 32x at batch 2 sized by its live tensor bytes
        'train_step_bf16': ('train_step.py', ['--presets', 'celeba_8x:4,celebamaskhq_8x:4', '--amp', 'bf16']),
        'train_32x_b2': ('train_step.py', ['--presets', 'celebamaskhq_32x:2', '--grad-checkpointing', '--amp', 'bf16',
                                           '--tensor-peak', '--no-flops', '--warmup', '1', '--iters', '1']),
    },
    'quick': {
        'generator': ('generator.py', ['--presets', 'tiny:1,demo:1,demo:8']),
        'train_step': ('train_step.py', ['--presets', 'tiny:2', '--no-vgg']),
        'train_step_ckpt': ('train_step.py', ['--presets', 'tiny:1', '--no-vgg', '--grad-checkpointing', '--warmup', '0', '--iters', '1']),
        'components': ('components.py', ['--presets', 'demo:1']),
        'explore': ('explore.py', ['--presets', 'demo', '--samples', '16', '--precision', 'fp32', 'bf16']),
        'train_step_bf16': ('train_step.py', ['--presets', 'tiny:2', '--no-vgg', '--amp', 'bf16']),
        'train_32x_b2': ('train_step.py', ['--presets', 'tiny:2', '--no-vgg', '--grad-checkpointing', '--amp', 'bf16',
                                           '--tensor-peak', '--no-flops', '--warmup', '1', '--iters', '1']),
    },
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', required=True, help='JSON file to write')
    p.add_argument('--device', default='cpu')
    p.add_argument('--dtype', default='fp32', choices=['fp32', 'bf16'])
    p.add_argument('--quick', action='store_true', help='small presets only')
    p.add_argument('--parts', nargs='+', default=list(PLANS['full']), choices=list(PLANS['full']))
    p.add_argument('--update', action='store_true', help='keep the other parts of an existing --out file')
    a = p.parse_args(argv)
    import torch
    res = dict(machine=dict(date=datetime.datetime.now().isoformat(timespec='seconds'), python=platform.python_version(),
                            torch=torch.__version__, cpu=platform.processor() or platform.machine(), cpu_count=os.cpu_count(),
                            threads=torch.get_num_threads(), load_avg_1m=os.getloadavg()[0],
                            gpu=torch.cuda.get_device_name() if a.device.startswith('cuda') else None),
               device=a.device, dtype=a.dtype, quick=a.quick, commands={}, seconds={})
    if a.update and os.path.exists(a.out):
        old = json.load(open(a.out))
        res = {**old, 'commands': old.get('commands', {}), 'seconds': old.get('seconds', {}),
               'updated': {part: res['machine'] for part in a.parts}}
    for part in a.parts:
        script, args = PLANS['quick' if a.quick else 'full'][part]
        args = args + ['--device', a.device, '--json']
        if part in ('generator', 'components'): args += ['--dtype', a.dtype]
        if part == 'explore' and a.device != 'cpu': args += ['--threads', str(torch.get_num_threads())]
        cmd = [sys.executable, os.path.join(HERE, script)] + args
        res['commands'][part] = 'python benchmarks/' + script + ' ' + ' '.join(args)
        print('$', res['commands'][part], flush=True)
        t = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True)
        res['seconds'][part] = round(time.time() - t, 1)
        if r.returncode: print(r.stderr, file=sys.stderr); return r.returncode
        res[part] = json.loads(r.stdout[r.stdout.index('{'):])
        print(f"  done in {res['seconds'][part]:.0f} s", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + '.tmp'
    with open(tmp, 'w') as f: json.dump(res, f, indent=1)
    os.replace(tmp, a.out)
    print('wrote', a.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
