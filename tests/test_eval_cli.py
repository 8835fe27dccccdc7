"""End-to-end checks of `deepsee eval` and `deepsee reproduce` that are too slow for the notebooks
(subprocesses, the real VGG19 weights, a trained segmenter)."""
from __future__ import annotations
import json, os, subprocess, sys, warnings
from pathlib import Path
import pytest
import torch

from deepsee.core import preset, downsample
from deepsee.model import DeepSEE
from deepsee.evaluation import evaluate, bicubic, train_models, train_seg, vgg_distance, write_table
from deepsee.metrics import psnr

ENV = {**os.environ, 'PYTHONWARNINGS': 'ignore', 'MPLBACKEND': 'Agg'}


def deepsee(*args, cwd=None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, '-c', 'import sys; from deepsee.cli import main; sys.exit(main(sys.argv[1:]))']
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=900)


@pytest.fixture(scope='module')
def bundle(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp('m') / 'indep'
    torch.manual_seed(3)
    DeepSEE(preset('tiny'), meta=dict(random_init=True)).eval().save(d)
    return d


def test_cli_eval_table_end_to_end(tmp_path, bundle):
    r = deepsee('eval', 'table', '--model', f'mine={bundle}', '--data', 'synthetic:6', '-o', tmp_path / 'out',
                '--batch-size', '3', '--no-progress', '--vgg-dist')
    assert r.returncode == 0, r.stderr
    js = json.loads((tmp_path / 'out' / 'results.json').read_text())
    rows = {x['method']: x for x in js['rows']}
    assert list(rows) == ['bicubic', 'mine']
    for x in rows.values():
        assert set(['psnr', 'ssim', 'lpips', 'fid', 'lr_consistency', 'vgg_dist', 'n']) <= set(x) and x['n'] == 6
        assert x['fid'] is not None and x['fid'] > 0 and x['vgg_dist'] > 0
    assert rows['mine']['settings']['mask'] == 'ground truth'
    assert rows['mine']['settings']['vgg_dist']['weights'] in ('normalised', 'torchvision')   # real VGG19 weights
    md = (tmp_path / 'out' / 'results.md').read_text()
    assert md.startswith('| Method | PSNR | SSIM | LPIPS | FID |') and '| bicubic |' in md and '| mine |' in md
    assert 'LPIPS:' in md and (tmp_path / 'out' / 'results.csv').exists() and '| mine |' in r.stdout
    # bicubic's PSNR is metrics.psnr of the bicubic upscale, by hand
    from deepsee.data import make_dataset
    ds = make_dataset('synthetic:6', 128, 8, 'test')
    hr = torch.stack([ds[i]['hr'] for i in range(6)])
    assert abs(rows['bicubic']['psnr'] - psnr(bicubic(downsample(hr, 8), 8), hr).mean()) < 1e-9


def test_cli_eval_errors_are_one_line(tmp_path):
    r = deepsee('eval', 'table', '--model', tmp_path / 'missing', '--data', 'synthetic:4', '-o', tmp_path / 'o')
    assert r.returncode == 2 and 'not a directory' in r.stderr and 'Traceback' not in r.stderr
    r = deepsee('eval', 'table', '--data', 'synthetic:4', '-o', tmp_path / 'o', '--lpips', tmp_path / 'alex.pth')
    assert r.returncode == 2 and 'alex.pth' in r.stderr and 'Traceback' not in r.stderr


def test_real_vgg_distance_orders_blur():
    from deepsee.losses import VGG19Features
    from deepsee.data import make_dataset
    ds = make_dataset('synthetic:3', 128, 8, 'test')
    hr = torch.stack([ds[i]['hr'] for i in range(3)])
    vgg = VGG19Features()
    d8 = vgg_distance(bicubic(downsample(hr, 8), 8), hr, vgg).values
    d2 = vgg_distance(bicubic(downsample(hr, 2), 2), hr, vgg).values
    assert (d2 < d8).all() and vgg_distance(hr, hr, vgg).values.abs().max() < 1e-9


def test_segmenter_gives_predicted_masks(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        seg = train_seg('tiny', 'synthetic:8', tmp_path / 'runs', steps=2, batch_size=2, progress=False)
        assert (seg / 'model.safetensors').exists()
        assert train_seg('tiny', 'synthetic:8', tmp_path / 'runs', steps=2, progress=False) == seg   # reused
        b = train_models(['semantics_only'], 'synthetic:8', tmp_path / 'runs', steps=1, batch_size=2, no_vgg=True,
                         seg=seg, progress=False, tensorboard=False, n_val=0)
        m = DeepSEE.load(b['semantics_only'])
        assert m.segmenter is not None
        rows = evaluate({'sem': m}, 'synthetic:8', n=2, batch_size=2, fid=False, progress=False)
        assert rows[1]['settings']['mask'] == 'predicted'
        truth = evaluate({'sem': m}, 'synthetic:8', n=2, batch_size=2, fid=False, progress=False, mask_source='truth')
        assert truth[1]['settings']['mask'] == 'ground truth'
        paths = write_table(rows, tmp_path / 't')
        assert 'Masks (predicted, by the bundled segmenter): sem.' in paths['md'].read_text()


def test_reproduce_dry_run_cli(tmp_path):
    r = deepsee('reproduce', '--profile', 'cpu', '--out', tmp_path / 'fig', '--dry-run')
    assert r.returncode == 0, r.stderr
    assert r.stdout.index('07_ablations') < r.stdout.index('05c_tables') < r.stdout.index('08_oracle_sampling')
    r = deepsee('reproduce', '--profile', 'paper', '--dry-run')
    assert r.returncode == 2 and '--data' in r.stderr
    r = deepsee('reproduce', '--profile', 'paper', '--data', tmp_path, '--dry-run')
    assert r.returncode == 0 and '"epochs": 7' in r.stdout and '"n_samples": [1, 10, 100, 1000]' in r.stdout


@pytest.mark.skipif(os.environ.get('DEEPSEE_SLOW') != '1', reason='a full papermill run of the experiment notebooks (minutes); DEEPSEE_SLOW=1')
def test_reproduce_cpu_smoke(tmp_path):
    r = deepsee('reproduce', '--profile', 'cpu', '--steps', '1', '--out', tmp_path / 'fig', '--runs', tmp_path / 'runs',
                '--no-progress')
    assert r.returncode == 0, r.stderr[-3000:]
    for f in ('ablations.md', 'ablations.json', 'table_synthetic.md', 'oracle_lpips.png', 'oracle_ssim.png', 'oracle.json',
              'reproduce_cpu.json', 'executed/07_ablations.ipynb'):
        assert (tmp_path / 'fig' / f).exists(), f
    rec = json.loads((tmp_path / 'fig' / 'reproduce_cpu.json').read_text())
    assert set(rec['notebooks']) == {'07_ablations', '05c_tables', '08_oracle_sampling'}
