"`deepsee upscale` end to end on a random-weight tiny bundle, and every bad input: one line on stderr, exit code 2."
import io, os, subprocess, sys
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from deepsee.core import colorize, downsample
from deepsee.data import procedural_face, to_tensor
from deepsee.explore import (main_upscale, random_model, load_image, load_mask, save_png, save_mask, to_image,
                             consistency_error, default_model_path)
from deepsee.sessions import Session


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    "A tiny bundle (with a segmenter when deepsee.segmentation exists), one without, an LR face, its mask, odd inputs."
    d = tmp_path_factory.mktemp('cli')
    model = random_model('tiny', seed=0)
    model.save(d / 'bundle')
    random_model('tiny', seed=0, segmenter=False).save(d / 'noseg')
    img, lab = procedural_face(128, 11)
    lr = downsample(to_tensor(img)[None], 8).clamp(-1, 1)
    save_png(to_image(lr), d / 'face.png')
    save_mask(torch.from_numpy(lab.astype(np.int64))[None], d / 'mask.png')
    Image.fromarray(img).save(d / 'photo.png')                               # 128x128: too large for a 16x16 model
    Image.fromarray(np.asarray(Image.open(d / 'face.png').convert('L'))).save(d / 'grey.png')
    Image.open(d / 'face.png').convert('RGBA').save(d / 'alpha.png')
    (d / 'text.png').write_text('this is not an image')
    Image.fromarray(colorize(lab[::2, ::2])).save(d / 'small_mask.png')    # 64x64
    odd = colorize(lab).copy(); odd[5, 9] = (123, 77, 200)
    Image.fromarray(odd).save(d / 'odd_mask.png')
    (d / 'not_a_bundle').mkdir()
    (d / 'not_a_bundle' / 'readme.txt').write_text('hello')
    (d / 'folder').mkdir()
    for k in range(2): save_png(to_image(lr.flip(-1) if k else lr), d / 'folder' / f'f{k}.png')
    (d / 'folder' / 'notes.txt').write_text('ignored')
    (d / 'empty').mkdir()
    return d, model.segmenter is not None


def run(args, capsys):
    rc = main_upscale([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *fragments):
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('deepsee upscale: error: '), err
    assert 'Traceback' not in err
    for f in fragments: assert f in lines[0], (f, lines[0])


def test_end_to_end(env, capsys):
    d, has_seg = env
    o = d / 'out_file'
    rc, out, err = run(['-i', d / 'face.png', '-o', o, '--model', d / 'bundle', '--mask', d / 'mask.png',
                        '--consistent', '--device', 'cpu'], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in o.iterdir()) == ['face.png', 'face.session.safetensors', 'face_mask.png',
                                                   'face_style.safetensors']
    assert f"{d / 'face.png'} -> {o / 'face.png'}" in out
    sr = load_image(o / 'face.png')
    assert sr.shape == (1, 3, 128, 128)
    assert consistency_error(sr, load_image(d / 'face.png'), 8) < 0.5                    # after 8-bit rounding too
    assert torch.equal(load_mask(o / 'face_mask.png', 128), load_mask(d / 'mask.png', 128))
    assert load_file(str(o / 'face_style.safetensors'))['style'].shape == (19, 8)
    s = Session.load(o / 'face.session.safetensors')
    assert s.consistent and s.model == str(d / 'bundle') and torch.equal(s.mask, load_mask(d / 'mask.png', 128))


def test_segmenter_mask_and_guide(env, capsys):
    d, has_seg = env
    if not has_seg: pytest.skip('deepsee.segmentation is not available')
    rc, out, err = run(['-i', d / 'face.png', '-o', d / 'out_seg', '--model', d / 'bundle', '--guide', d / 'photo.png'], capsys)
    assert rc == 0, err
    assert (d / 'out_seg' / 'face_mask.png').exists()
    g = load_file(str(d / 'out_seg' / 'face_style.safetensors'))['style']
    rc, _, err = run(['-i', d / 'face.png', '-o', d / 'out_seg2', '--model', d / 'bundle'], capsys)
    assert rc == 0, err
    assert not torch.equal(g, load_file(str(d / 'out_seg2' / 'face_style.safetensors'))['style'])   # guide's style


def test_samples_reproducible(env, capsys):
    d, _ = env
    args = ['-i', d / 'face.png', '--model', d / 'bundle', '--mask', d / 'mask.png', '--samples', '4', '--seed', '3',
            '--batch-size', '3']
    for name in ('s1', 's2'):
        rc, out, err = run(args + ['-o', d / name], capsys)
        assert rc == 0, err
    sheet = Image.open(d / 's1' / 'face_samples.png')
    assert sheet.size == (2 * 128 + 3 * 2, 2 * 128 + 3 * 2)
    names = sorted(p.name for p in (d / 's1' / 'face_samples').iterdir())
    assert names == ['000.png', '001.png', '002.png', '003.png', 'styles.safetensors']
    assert load_file(str(d / 's1' / 'face_samples' / 'styles.safetensors'))['style'].shape == (4, 19, 8)
    for n in names[:-1]: assert (d / 's1' / 'face_samples' / n).read_bytes() == (d / 's2' / 'face_samples' / n).read_bytes()
    st = [load_file(str(d / s / 'face_samples' / 'styles.safetensors'))['style'] for s in ('s1', 's2')]
    assert torch.equal(*st)                                      # (the file's metadata order is not deterministic)
    a = np.asarray(Image.open(d / 's1' / 'face_samples' / '000.png'))
    assert not np.array_equal(a, np.asarray(Image.open(d / 's1' / 'face_samples' / '001.png')))
    rc, _, err = run(['-i', d / 'face.png', '--model', d / 'bundle', '--mask', d / 'mask.png', '--samples', '1',
                      '--seed', '4', '-o', d / 's3'], capsys)
    assert rc == 0 and not np.array_equal(a, np.asarray(Image.open(d / 's3' / 'face_samples' / '000.png')))


def test_folder(env, capsys):
    d, _ = env
    rc, out, err = run(['-i', d / 'folder', '-o', d / 'out_folder', '--model', d / 'bundle', '--mask', d / 'mask.png'], capsys)
    assert rc == 0, err
    assert {p.name for p in (d / 'out_folder').glob('*.png')} == {'f0.png', 'f0_mask.png', 'f1.png', 'f1_mask.png'}
    assert len(out.strip().splitlines()) == 2


def test_converted_inputs_are_noted(env, capsys):
    d, _ = env
    for name, note in (('grey.png', 'grayscale converted to RGB'), ('alpha.png', 'alpha channel dropped')):
        rc, out, err = run(['-i', d / name, '-o', d / f'out_{name}', '--model', d / 'bundle', '--mask', d / 'mask.png'], capsys)
        assert rc == 0, err
        assert err.strip() == f"deepsee upscale: note: {d / name}: {note}"
    rc, out, err = run(['-i', d / 'photo.png', '-o', d / 'out_big', '--model', d / 'bundle', '--mask', d / 'mask.png',
                        '--downscale'], capsys)
    assert rc == 0 and 'downscaled from 128x128 to 16x16' in err and (d / 'out_big' / 'photo.png').exists()


@pytest.mark.parametrize('case', ['not_image', 'too_large', 'mask_size', 'mask_colours', 'not_bundle', 'no_model',
                                  'missing_input', 'empty_folder', 'guide_not_image', 'no_segmenter', 'bad_device',
                                  'negative_samples'])
def test_bad_input(env, capsys, case):
    d, _ = env
    base = ['-o', d / f'bad_{case}', '--model', d / 'bundle', '--mask', d / 'mask.png']
    args, fragments = {
        'not_image': (['-i', d / 'text.png'] + base, [f"{d / 'text.png'}: not a readable image"]),
        'too_large': (['-i', d / 'photo.png'] + base, [f"{d / 'photo.png'}: image is 128x128, larger than", '--downscale']),
        'mask_size': (['-i', d / 'face.png', '-o', d / 'b', '--model', d / 'bundle', '--mask', d / 'small_mask.png'],
                      [f"{d / 'small_mask.png'}: mask is 64x64, expected 128x128"]),
        'mask_colours': (['-i', d / 'face.png', '-o', d / 'b', '--model', d / 'bundle', '--mask', d / 'odd_mask.png'],
                         [f"{d / 'odd_mask.png'}: 1 pixels have colours that are not in the label palette", 'x=9, y=5']),
        'not_bundle': (['-i', d / 'face.png', '-o', d / 'b', '--model', d / 'not_a_bundle'],
                       [f"{d / 'not_a_bundle'}: not a model bundle"]),
        'no_model': (['-i', d / 'face.png', '-o', d / 'b', '--model', d / 'nowhere'], [f"{d / 'nowhere'}: no such model bundle"]),
        'missing_input': (['-i', d / 'nope.png'] + base, [f"{d / 'nope.png'}: no such file or folder"]),
        'empty_folder': (['-i', d / 'empty'] + base, [f"{d / 'empty'}: no images in this folder"]),
        'guide_not_image': (['-i', d / 'face.png', '--guide', d / 'text.png'] + base, [f"{d / 'text.png'}: not a readable image"]),
        'no_segmenter': (['-i', d / 'face.png', '-o', d / 'b', '--model', d / 'noseg'], ['has no segmenter; pass a mask PNG']),
        'bad_device': (['-i', d / 'face.png', '--device', 'quantum'] + base, ['--device quantum: not a device name']),
        'negative_samples': (['-i', d / 'face.png', '--samples', '-2'] + base, ['--samples -2: must be >= 0']),
    }[case]
    rc, out, err = run(args, capsys)
    assert_one_line_error(rc, err, *fragments)
    assert not (d / f'bad_{case}').exists() and not (d / 'b').exists()          # nothing written on bad input


def test_default_model_missing(env, capsys):
    d, _ = env
    if (default_model_path() / 'model.safetensors').exists(): pytest.skip('the demo model is installed')
    rc, out, err = run(['-i', d / 'face.png', '-o', d / 'b_default'], capsys)
    assert_one_line_error(rc, err, 'the bundled demo model is not installed')


def test_usage_errors(capsys):
    assert main_upscale(['-i', 'x.png']) == 2                                     # argparse: -o missing
    assert 'the following arguments are required: -o/--output' in capsys.readouterr().err
    assert main_upscale(['--help']) == 0


def test_entry_point_subprocess(env):
    "The real `deepsee upscale` process: exit code 2, one line, no traceback; exit code 0 on good input."
    d, _ = env
    code = 'import sys; from deepsee.cli import main; sys.exit(main())'
    bad = subprocess.run([sys.executable, '-c', code, 'upscale', '-i', str(d / 'text.png'), '-o', str(d / 'sub'),
                          '--model', str(d / 'bundle'), '--mask', str(d / 'mask.png')],
                         capture_output=True, text=True, timeout=120, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert bad.returncode == 2 and bad.stderr.strip().count('\n') == 0 and 'Traceback' not in bad.stderr
    assert bad.stderr.startswith(f"deepsee upscale: error: {d / 'text.png'}: not a readable image")
    good = subprocess.run([sys.executable, '-c', code, 'upscale', '-i', str(d / 'face.png'), '-o', str(d / 'sub'),
                           '--model', str(d / 'bundle'), '--mask', str(d / 'mask.png'), '--device', 'cpu'],
                          capture_output=True, text=True, timeout=120, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert good.returncode == 0, good.stderr
    assert (d / 'sub' / 'face.png').exists()


def test_never_overwrites_an_input(env, capsys, tmp_path):
    "`-o` pointing at the input folder: refused (exit 2, one line), even with --overwrite; the inputs stay as they were."
    d, _ = env
    src = tmp_path / 'in'
    src.mkdir()
    (src / 'face.png').write_bytes((d / 'face.png').read_bytes())
    (src / 'other.png').write_bytes((d / 'face.png').read_bytes())
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    for extra in ([], ['--overwrite']):
        rc, out, err = run(['-i', src, '-o', src, '--model', d / 'bundle', '--mask', d / 'mask.png'] + extra, capsys)
        assert_one_line_error(rc, err, f"{src / 'face.png'}: would overwrite the input {src / 'face.png'}",
                              'choose another output folder (-o)')
        assert {p.name: p.read_bytes() for p in src.iterdir()} == before and out == ''
    # a mask given as input is an input too: an output of the same name in -o is refused
    (tmp_path / 'o').mkdir()
    (tmp_path / 'o' / 'face_mask.png').write_bytes((d / 'mask.png').read_bytes())
    rc, out, err = run(['-i', d / 'face.png', '-o', tmp_path / 'o', '--model', d / 'bundle', '--mask',
                        tmp_path / 'o' / 'face_mask.png', '--overwrite'], capsys)
    assert_one_line_error(rc, err, f"{tmp_path / 'o' / 'face_mask.png'}: would overwrite the input")
    assert sorted(p.name for p in (tmp_path / 'o').iterdir()) == ['face_mask.png']


def test_existing_outputs_need_overwrite(env, capsys, tmp_path):
    d, _ = env
    o = tmp_path / 'out'
    args = ['-i', d / 'face.png', '-o', o, '--model', d / 'bundle', '--mask', d / 'mask.png', '--samples', '2']
    rc, out, err = run(args, capsys)
    assert rc == 0, err
    before = {p: p.read_bytes() for p in o.rglob('*') if p.is_file()}
    rc, out, err = run(args + ['--seed', '9'], capsys)
    assert_one_line_error(rc, err, f"{o / 'face.png'}: exists (and 7 more outputs); pass --overwrite to replace")
    assert {p: p.read_bytes() for p in o.rglob('*') if p.is_file()} == before         # nothing written
    # one existing file among new ones is enough to refuse
    for p in before:
        if p.name != 'face_samples.png': p.unlink()
    rc, out, err = run(args + ['--seed', '9'], capsys)
    assert_one_line_error(rc, err, f"{o / 'face_samples.png'}: exists; pass --overwrite")
    rc, out, err = run(args + ['--seed', '9', '--overwrite'], capsys)
    assert rc == 0, err
    assert (o / 'face_samples.png').read_bytes() != before[o / 'face_samples.png']     # replaced: other samples


def test_help_quiet_and_progress(env, capsys, monkeypatch):
    d, _ = env
    assert main_upscale(['--help']) == 0
    h = capsys.readouterr().out
    for opt in ('--faces', '--overwrite', '--quiet', '-s/--scale'): assert opt in h, opt
    rc, out, err = run(['-i', d / 'folder', '-o', d / 'out_quiet', '--model', d / 'bundle', '--mask', d / 'mask.png',
                        '--quiet'], capsys)
    assert rc == 0 and out == '' and err == ''
    # not a terminal (as here): no progress bar; on a terminal: a bar on stderr over the 2 images
    class TTY(io.StringIO):
        def isatty(self): return True
    tty = TTY()
    monkeypatch.setattr(sys, 'stderr', tty)
    rc = main_upscale([str(a) for a in ['-i', d / 'folder', '-o', d / 'out_tty', '--model', d / 'bundle', '--mask',
                                        d / 'mask.png']])
    monkeypatch.undo()
    assert rc == 0 and 'upscale:' in tty.getvalue() and '/2 [' in tty.getvalue()
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


def test_version(capsys):
    from deepsee import __version__
    from deepsee.cli import main
    assert main(['--version']) == 0
    assert capsys.readouterr().out == f'deepsee {__version__}\n'
