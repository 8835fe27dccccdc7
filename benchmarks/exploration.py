"""How visibly a model explores: the exploration figures of the demo model card, on held-out procedural faces.

    python benchmarks/exploration.py [--model DIR] [--n 200] [--json OUT]

For each face (the test split of `synthetic:N`, never trained on), with the mask from the model's segmenter and the
style from the LR image, as `deepsee upscale` does:
- sample diversity: mean pairwise mean-absolute difference among 16 samples at delta 0.2 (`explore.samples`), 0..255;
- region control: the style row of one region replaced by a random one (U(-1,1), seeded): the mean absolute change
  inside that region (0..255), the change of the region's mean colour, and the share of the whole change that falls
  inside the region dilated by 4 px; over every region covering at least 0.5% of the image;
- hair transfer: the hair row copied from a dark-haired reference photo (its style encoded from its HR image):
  how far the output's mean hair colour moves towards the reference's hair colour (1 = all the way);
- fidelity: PSNR against the ground truth (and bicubic's), and LR consistency (RMS of downsample(SR) - LR, 0..255).
Targets (issue 18): diversity >= 6, region change >= 10 with >= 80% inside, hair transfer >= 0.5, PSNR and LR
consistency no worse than the demo model of the issue (on these 200 faces: 20.32 dB, RMS 10.33).
"""
from __future__ import annotations
import argparse, json, math, time
from pathlib import Path
import numpy as np
import torch
import torch.nn.functional as F

from deepsee.core import LABELS, N_LABELS, downsample, upsample
from deepsee.data import SyntheticFaces
from deepsee.explore import load_model, samples, transfer, upscale

TARGETS = dict(diversity=6.0, region_change=10.0, region_inside=0.80, hair_transfer=0.5)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    "PSNR of images in [-1,1] on RGB 0..255."
    mse = (((a.clamp(-1, 1) - b) * 127.5) ** 2).mean().item()
    return 10 * math.log10(255 ** 2 / max(mse, 1e-10))


def dilate(m: torch.Tensor, px: int) -> torch.Tensor:
    return F.max_pool2d(m[None, None].float(), 2 * px + 1, 1, px)[0, 0] > 0


def pairwise_mad(x: torch.Tensor) -> float:
    "Mean over pairs of the mean absolute difference of images (n,3,H,W) in [-1,1], on 0..255."
    flat = x.flatten(1) * 127.5
    d = torch.cdist(flat, flat, p=1) / flat.shape[1]
    n = len(x)
    return float(d.sum() / (n * (n - 1)))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--model', default=None, help='model bundle (default: the bundled demo model)')
    p.add_argument('--n', type=int, default=200, help='held-out procedural faces')
    p.add_argument('--samples', type=int, default=16)
    p.add_argument('--delta', type=float, default=0.2)
    p.add_argument('--json', default=None, help='also write the figures to this JSON file')
    a = p.parse_args(argv)
    torch.manual_seed(0)
    model = load_model(a.model)
    c = model.cfg
    data = SyntheticFaces(a.n, c.hr_size, c.factor, split='test')
    t0 = time.time()
    items = [data[i] for i in range(len(data))]
    lum = lambda rgb: float(rgb @ torch.tensor([0.299, 0.587, 0.114]))
    hair_of = lambda img, lab: ((img[:, lab == LABELS.index('hair')] + 1) / 2).mean(1) if (lab == LABELS.index('hair')).sum() > 50 else None
    dark = [i for i, s in enumerate(items) if (h := hair_of(s['hr'], s['labels'])) is not None and lum(h) < 0.2]
    div, fid, bic, lrc, regions, hair = [], [], [], [], {}, []
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for i, s in enumerate(items):
            lr, hr = s['lr'][None], s['hr'][None]
            res = upscale(model, lr)
            sr, mask, style = res.image, res.mask, res.style
            fid.append(psnr(sr, hr)); bic.append(psnr(upsample(lr, c.hr_size), hr))
            lrc.append(float(((downsample(sr, c.factor) - lr) * 127.5).pow(2).mean().sqrt()))
            div.append(pairwise_mad(samples(model, lr, a.samples, a.delta, seed=i, mask=mask, style=style).image))
            m = mask[0]
            area = torch.bincount(m.flatten(), minlength=N_LABELS) / m.numel()
            ks = [k for k in range(N_LABELS) if area[k] >= 0.005]
            styles = style.repeat(len(ks), 1, 1)
            for j, k in enumerate(ks): styles[j, k] = torch.rand(style.shape[-1], generator=g) * 2 - 1
            out = upscale(model, lr, mask, styles).image
            for j, k in enumerate(ks):
                d = (out[j] - sr[0]).abs().mean(0) * 127.5
                inside, near = m == k, dilate(m == k, 4)
                col = ((out[j][:, inside] - sr[0][:, inside]).mean(1) * 127.5).norm().item()
                regions.setdefault(LABELS[k], []).append((float(d[inside].mean()), float(d[near].sum() / d.sum().clamp(min=1e-6)), col))
            h0 = hair_of(sr[0], m)
            if h0 is not None and lum(h0) > 0.35 and dark:
                r = items[dark[i % len(dark)]]
                ref_style = model.encode_style(r['hr'][None], r['labels'][None].long(), 'hr')
                h1 = hair_of(upscale(model, lr, mask, transfer(style, ref_style, rows='hair')).image[0], m)
                href = hair_of(r['hr'], r['labels'])
                hair.append(1 - float((h1 - href).norm() / (h0 - href).norm().clamp(min=1e-6)))
    per_region = {k: dict(change=float(np.mean([v[0] for v in vs])), inside=float(np.mean([v[1] for v in vs])),
                          colour=float(np.mean([v[2] for v in vs])), n=len(vs)) for k, vs in sorted(regions.items())}
    allv = [v for vs in regions.values() for v in vs]
    out = dict(model=str(a.model or 'demo (bundled)'), faces=len(items), seconds=round(time.time() - t0, 1),
               diversity=float(np.mean(div)), region_change=float(np.mean([v[0] for v in allv])),
               region_inside=float(np.mean([v[1] for v in allv])), region_colour=float(np.mean([v[2] for v in allv])),
               hair_transfer=float(np.mean(hair)) if hair else float('nan'), hair_pairs=len(hair),
               psnr=float(np.mean(fid)), psnr_bicubic=float(np.mean(bic)), lr_rms=float(np.mean(lrc)), per_region=per_region)
    print(f"{out['model']}: {out['faces']} held-out procedural faces, {out['seconds']} s")
    for k, target in TARGETS.items():
        print(f"  {k:<14} {out[k]:8.3f}   target {'>=':>2} {target}   {'ok' if out[k] >= target else 'MISSED'}")
    print(f"  region colour  {out['region_colour']:8.3f}   (change of the region's mean colour, 0..255)")
    print(f"  PSNR {out['psnr']:.2f} dB (bicubic {out['psnr_bicubic']:.2f}), LR RMS error {out['lr_rms']:.2f}/255, "
          f"hair transfers measured: {out['hair_pairs']}")
    print('  per region (change, share inside, colour):', ', '.join(f"{k} {v['change']:.1f}/{v['inside']:.2f}/{v['colour']:.1f}"
                                                                     for k, v in per_region.items()))
    if a.json: Path(a.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == '__main__':
    main()
