"""What a fixed CPU budget of `tiny` training on procedural faces reaches.

    python benchmarks/train_tiny_budget.py [--minutes 30] [--threads 1] [--vgg PATH | --no-vgg] [--json]

Trains the `tiny` preset (16 -> 128, 8x) on `synthetic:N` procedural faces with the paper's recipe for a
budget of CPU time (user + system of this process), then scores the result on held-out procedural faces (the `val`
split: seeds disjoint from training): PSNR and SSIM of SR and of bicubic against the ground truth, and LR
consistency (PSNR of the downsampled SR image against the LR input; for bicubic the same round trip). The style
comes from the LR image (the independent model at test time), noise off.
"""
from __future__ import annotations
import argparse, json, os, sys, tempfile, time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--minutes', type=float, default=30)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--faces', type=int, default=2000, help='procedural training faces')
    p.add_argument('--eval-faces', type=int, default=64, help='held-out procedural faces to score')
    p.add_argument('--batch-size', type=int, default=4)
    p.add_argument('--vgg', help='VGG19 weights for the perceptual loss')
    p.add_argument('--no-vgg', action='store_true', help='train without the perceptual loss')
    p.add_argument('--run-dir', help='keep the run here (default: a temporary folder)')
    p.add_argument('--json', action='store_true')
    a = p.parse_args(argv)
    import torch
    torch.set_num_threads(a.threads)
    from deepsee.core import preset, downsample, upsample
    from deepsee.data import make_dataset
    from deepsee.training import Trainer
    from deepsee.metrics import psnr, ssim
    cfg = preset('tiny')
    run_dir = a.run_dir or tempfile.mkdtemp(prefix='tiny_budget_')
    tr = Trainer(cfg, f'synthetic:{a.faces}', run_dir, max_steps=10**7, no_vgg=a.no_vgg, vgg_path=a.vgg,
                 batch_size=a.batch_size, time_limit=0, log_every=50, val_every=500, ckpt_every=100,
                 progress=not a.json, n_val=8, resume=True)
    cpu = lambda: sum(os.times()[:2])
    c0, t0, s0 = cpu(), time.time(), tr.step
    tr._out_of_time = lambda _t: cpu() - c0 > a.minutes * 60      # a CPU-time budget instead of wall time
    tr.fit()
    cpu_min = (cpu() - c0) / 60
    wall, steps = time.time() - t0, tr.step - s0
    ds = make_dataset(f'synthetic:{a.eval_faces}', cfg.hr_size, cfg.factor, 'val', flip=False)
    m = tr.model.eval()
    rows = {k: [] for k in ('psnr', 'psnr_bicubic', 'ssim', 'ssim_bicubic', 'lr_psnr', 'lr_psnr_bicubic')}
    with torch.no_grad():
        for i in range(0, len(ds), 16):
            b = torch.utils.data.default_collate([ds[j] for j in range(i, min(i + 16, len(ds)))])
            lr, hr, lab = b['lr'], b['hr'], b['labels']
            sr = m.generator(lr, lab, m.encode_style(lr, lab, 'lr'), noise=False)
            bic = upsample(lr, cfg.hr_size).clamp(-1, 1)
            for name, x in (('', sr), ('_bicubic', bic)):
                rows['psnr' + name] += psnr(x, hr).tolist()
                rows['lr_psnr' + name] += psnr(downsample(x, cfg.factor), lr).tolist()
                rows['ssim' + name] += ssim(x, hr).tolist()
    tr.close()
    res = dict(cpu_minutes=cpu_min, wall_minutes=wall / 60, threads=a.threads, steps=steps, sec_per_it=wall / max(steps, 1), batch_size=a.batch_size,
               vgg=not a.no_vgg, train_faces=a.faces, eval_faces=len(ds), run_dir=run_dir,
               **{k: sum(v) / len(v) for k, v in rows.items()})
    if a.json: print(json.dumps(res, indent=1))
    else:
        print(f"{steps} steps in {cpu_min:.1f} CPU min / {wall / 60:.1f} min ({res['sec_per_it']:.2f} s/it, batch {a.batch_size}, "
              f"{'with' if res['vgg'] else 'without'} VGG)")
        print(f"held-out procedural faces ({len(ds)}):  PSNR SR {res['psnr']:.2f} dB vs bicubic {res['psnr_bicubic']:.2f} dB;  "
              f"SSIM SR {res['ssim']:.3f} vs bicubic {res['ssim_bicubic']:.3f};  "
              f"LR consistency SR {res['lr_psnr']:.2f} dB vs bicubic {res['lr_psnr_bicubic']:.2f} dB")
    return 0


if __name__ == '__main__':
    sys.exit(main())
