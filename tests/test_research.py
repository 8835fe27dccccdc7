"""`deepsee convert` beyond the fixture: 32x (pure SEAN above max_fm_size), guided, 256 px and other widths against a
direct implementation of the research arithmetic (tests/research_reference.py, anchored by the fixture), the command
line's refusals, fine-tuning a converted model, and upscaling with one."""
import contextlib, io, sys
from pathlib import Path
import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
import research_reference as R
from deepsee.fast import modulation
from deepsee.cli import main
from deepsee.research import load_research

FIXTURE = Path(__file__).parent / 'fixtures' / 'research-checkpoint'
PATHS = ('reference', 'lookup', 'fused')   # the modulation processors (deepsee.fast)




def cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): rc = main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue()


def test_reference_matches_the_research_networks():
    "The reference implementation reproduces the research networks' own outputs stored in the fixture."
    io_ = load_file(str(FIXTURE / '8x_independent_128x128.io.safetensors'))
    G = torch.load(FIXTURE / '8x_independent_128x128' / 'latest_net_G.pth', weights_only=True)['model']
    E = torch.load(FIXTURE / '8x_independent_128x128' / 'latest_net_E.pth', weights_only=True)['model']
    with torch.no_grad():
        for k in ('mini', 'full', 'rand'):
            assert (R.generator_forward(G, io_['lr'], io_['labels'], io_[f'style_{k}']) - io_[f'sr_{k}']).abs().max() < 1e-6
        assert (R.encoder_forward(E, io_['lr'], io_['labels'], 'mini') - io_['style_mini']).abs().max() < 1e-6
        assert (R.encoder_forward(E, io_['hr'], io_['labels'], 'full') - io_['style_full']).abs().max() < 1e-6


# name, factor, crop, guided, ngf, nef, style width, (blocks: kind of the last one)
CASES = [('32x_independent', 32, 512, False, 1, 2, 128), ('32x_guided', 32, 512, True, 1, 2, 128),
         ('8x_guided_128x128', 8, 128, True, 2, 4, 16), ('8x_independent_256x256', 8, 256, False, 1, 2, 8),
         ('4x_independent_64x64', 4, 64, False, 3, 3, 12)]


@pytest.mark.parametrize('name,factor,crop,guided,ngf,nef,style', CASES, ids=[c[0] for c in CASES])
def test_converted_equals_research(tmp_path, name, factor, crop, guided, ngf, nef, style):
    G = R.research_generator(factor, ngf, style, crop, noise=crop < 512, seed=factor + ngf)
    E = R.research_encoder(nef, style, guided)
    D = R.research_discriminator(ndf=4)
    opt = dict(crop_size=crop, start_size=crop // factor) if name.startswith('4x') else None   # 4x: sizes from opt.txt
    R.save_research(tmp_path / name, G, E, D, opt)
    model, Dm = load_research(tmp_path / name)
    c = model.cfg
    assert (c.factor, c.hr_size, c.variant, c.generator.width) == (factor, crop, 'guided' if guided else 'independent', 16 * ngf)
    assert c.generator.pure_sean_blocks == (1 if crop >= 512 else 0) and c.generator.noise == (crop < 512)
    assert (model.style_encoder.lr is None) == guided
    g = torch.Generator().manual_seed(0)
    lr = torch.rand(2, 3, c.lr_size, c.lr_size, generator=g) * 2 - 1
    hr = torch.rand(2, 3, crop, crop, generator=g) * 2 - 1
    blocky = torch.randint(0, 19, (2, crop // 16, crop // 16), generator=g)
    labels = blocky.repeat_interleave(16, 1).repeat_interleave(16, 2)
    S = torch.rand(2, 19, style, generator=g) * 2 - 1
    with torch.no_grad():
        ref = R.generator_forward(G, lr, labels, S)
        assert 0.02 < ref.abs().max() < 0.9                    # a real signal, not tanh's saturation
        for path in PATHS:
            with modulation(model, path):
                assert (model.generator(lr, labels, S) - ref).abs().max() < 1e-5, path
        with torch.autocast('cpu', torch.bfloat16):
            assert (model.generator(lr, labels, S).float() - ref).abs().max() < 0.03
        s_full = model.encode_style(hr, labels, 'hr')
        assert s_full.abs().max() > 1e-3 and (s_full - R.encoder_forward(E, hr, labels, 'full')).abs().max() < 1e-6
        if not guided:
            assert (model.encode_style(lr, labels, 'lr') - R.encoder_forward(E, lr, labels, 'mini')).abs().max() < 1e-6
        for fr, fo in zip(R.discriminator_forward(D, hr, labels), Dm(hr, labels)):
            assert all((a - b).abs().max() < 1e-4 for a, b in zip(fr, fo))


def _write_fixture_copy(d: Path) -> Path:
    src = FIXTURE / '8x_independent_128x128'
    d.mkdir(parents=True)
    for f in src.iterdir(): (d / f.name).write_bytes(f.read_bytes())
    return d


class _Evil:
    def __reduce__(self): return (print, ('this would have run',))


def _edit_g(path: Path, edit) -> None:
    ck = torch.load(path / 'latest_net_G.pth', weights_only=True)
    edit(ck['model'])
    torch.save(ck, path / 'latest_net_G.pth')


BAD = {
    'pickle_with_code': (lambda p: torch.save({'model': _Evil()}, p / 'latest_net_G.pth'), 'latest_net_G.pth: refused'),
    'truncated': (lambda p: (p / 'latest_net_E.pth').write_bytes((p / 'latest_net_E.pth').read_bytes()[:5000]),
                  'latest_net_E.pth: cannot read the checkpoint (truncated'),
    'not_a_checkpoint': (lambda p: (p / 'latest_net_G.pth').rename(p / 'generator.bin'), 'not a research checkpoint folder'),
    'unknown_key': (lambda p: _edit_g(p, lambda sd: sd.update({'G_middle_0.extra.weight': torch.zeros(2)})),
                    'latest_net_G.pth: unexpected key G_middle_0.extra.weight'),
    'missing_key': (lambda p: _edit_g(p, lambda sd: sd.pop('up_list.1.conv_1.weight_u')),
                    'latest_net_G.pth: missing key up_list.1.conv_1.weight_u'),
    'shape': (lambda p: _edit_g(p, lambda sd: sd.update({'up_list.0.norm_0.mlp_style_beta.weight': torch.zeros(32, 8, 3, 3)})),
              'latest_net_G.pth: up_list.0.norm_0.mlp_style_beta.weight has shape (32, 8, 3, 3)'),
    'no_encoder': (lambda p: (p / 'latest_net_E.pth').unlink(), 'there is no <epoch>_net_E.pth beside it'),
}


@pytest.mark.parametrize('case', list(BAD))
def test_convert_refuses_bad_checkpoints(tmp_path, case):
    ck = _write_fixture_copy(tmp_path / 'ckpt')
    make_bad, msg = BAD[case]
    make_bad(ck)
    rc, out, err = cli('convert', ck, '-o', tmp_path / 'bundle')
    assert rc == 2 and out == '' and err.count('\n') == 1 and err.startswith('deepsee convert: error: '), err
    assert msg in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['ckpt']          # no bundle, no temporary folder left behind


def test_convert_never_overwrites(tmp_path):
    ck = _write_fixture_copy(tmp_path / 'ckpt')
    rc, out, _ = cli('convert', ck, '-o', tmp_path / 'bundle')
    assert rc == 0 and 'independent 8x (16 -> 128 px)' in out
    before = (tmp_path / 'bundle' / 'model.safetensors').stat().st_mtime_ns
    rc, _, err = cli('convert', ck, '-o', tmp_path / 'bundle')
    assert rc == 2 and 'exists and is not empty' in err
    assert (tmp_path / 'bundle' / 'model.safetensors').stat().st_mtime_ns == before
    for target in (ck, tmp_path):                       # the checkpoint itself, or a folder holding it: never
        rc, _, err = cli('convert', ck, '-o', target, '--overwrite')
        assert rc == 2 and 'would replace the input' in err
    assert sorted(p.name for p in ck.iterdir()) == ['latest_net_E.pth', 'latest_net_G.pth', 'opt.txt']


def test_upscale_with_a_converted_model(tmp_path):
    "The converted bundle (and the research folder itself) work in `deepsee upscale` with a mask."
    from deepsee.explore import save_mask, save_png, to_image
    io_ = load_file(str(FIXTURE / '8x_independent_128x128.io.safetensors'))
    save_png(to_image(io_['lr'][:1]), tmp_path / 'face.png')
    save_mask(io_['labels'][:1].long(), tmp_path / 'mask.png')
    assert cli('convert', FIXTURE / '8x_independent_128x128', '-o', tmp_path / 'bundle')[0] == 0
    for model in (tmp_path / 'bundle', FIXTURE / '8x_independent_128x128'):
        o = tmp_path / f'out_{model.name}'
        rc, out, err = cli('upscale', '-i', tmp_path / 'face.png', '-o', o, '--model', model, '--mask', tmp_path / 'mask.png', '--samples', '2')
        assert rc == 0, err
        assert (o / 'face.png').exists() and (o / 'face_samples' / '001.png').exists()
    rc, _, err = cli('upscale', '-i', tmp_path / 'face.png', '-o', tmp_path / 'x', '--model', 'celeba_8x')
    assert rc == 2 and 'preset celeba_8x has no trained weights; use --random-weights' in err


def test_fine_tune_a_converted_model(tmp_path):
    "`deepsee train --init BUNDLE` starts from the converted generator, encoder and discriminator, and trains."
    from deepsee.training import Trainer
    G = R.research_generator(8, 1, 8, 128, noise=True, seed=5)
    R.save_research(tmp_path / '8x_independent_128x128', G, R.research_encoder(2, 8, False), R.research_discriminator(ndf=4))
    assert cli('convert', tmp_path / '8x_independent_128x128', '-o', tmp_path / 'bundle')[0] == 0
    assert (tmp_path / 'bundle' / 'discriminator.safetensors').exists()
    model, D = load_research(tmp_path / '8x_independent_128x128')
    tr = Trainer(model.cfg, 'synthetic:8', tmp_path / 'run', max_steps=1, no_vgg=True, batch_size=2, n_val=0,
                 progress=False, tensorboard=False, init=tmp_path / 'bundle')
    try:
        for a, b in ((tr.model.generator, model.generator), (tr.model.style_encoder, model.style_encoder), (tr.D, D)):
            assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
        w0 = tr.model.generator.blocks[1].norm_0.style_gamma_beta.weight.detach().clone()
        tr.fit()
        assert not torch.equal(w0, tr.model.generator.blocks[1].norm_0.style_gamma_beta.weight)
    finally: tr.close()
    from deepsee.model import DeepSEE
    assert DeepSEE.load(tmp_path / 'run' / 'model').cfg.encoder.pooling == 'image_mean'
    rc, _, err = cli('train', '--init', tmp_path / 'bundle', '--variant', 'guided', '--data', 'synthetic:8', '--run-dir', tmp_path / 'r2')
    assert rc == 2 and "the --init bundle is 'independent'" in err
