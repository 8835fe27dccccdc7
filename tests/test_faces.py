"Slow tests of deepsee.faces on public-domain photos: detection, parsing, paste-back, `deepsee label` and the faces upscaler end to end."
import json
import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip('dlib', reason='needs the faces extra: pip install "deepsee[faces]"')
from deepsee import faces as F_
if not F_.faces_available():
    pytest.skip(f'needs the faces extra ({", ".join(F_.missing_packages())} missing): {F_.FACES_EXTRA}', allow_module_level=True)

from deepsee.core import DeepSEEError, LABEL_INDEX, preset
from deepsee.faces import (detect_faces, scan_faces, parse_face, parse_aligned, paste_back, paste_mask, main_label, main_upscale_faces, upscale_faces, read_photo, region_stats)
from deepsee.model import DeepSEE


@pytest.fixture(scope='module')
def photos():
    from skimage import data
    from matplotlib import cbook
    return dict(astronaut=data.astronaut(), hopper=read_photo(cbook.get_sample_data('grace_hopper.jpg', asfileobj=False)),
                coffee=data.coffee())

@pytest.fixture(scope='module')
def tiny():
    torch.manual_seed(0)
    return DeepSEE(preset('tiny')).eval()

def _centre(f): return (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2

def test_faces_found_where_they_are(photos):
    (fa,), (fh,) = detect_faces(photos['astronaut']), detect_faces(photos['hopper'])
    cx, cy = _centre(fa); assert 200 < cx < 240 and 100 < cy < 145
    cx, cy = _centre(fh); assert 240 < cx < 300 and 200 < cy < 270
    assert detect_faces(photos['coffee']) == []
    # 5-point landmarks (the CC0 model) frame the same face: crop centre within 6% of the side, side within 15%
    (f5,) = detect_faces(photos['astronaut'], landmarks=5)
    assert f5.landmarks.shape == (5, 2) and abs(f5.side / fa.side - 1) < 0.15
    assert np.hypot(*np.subtract(f5.center, fa.center)) < 0.06 * fa.side

def test_small_faces_rejected_with_reason(photos):
    small = np.asarray(Image.fromarray(photos['astronaut']).resize((192, 192), Image.BICUBIC))   # face box ~37 px, crop side ~65
    faces, rejected = scan_faces(small, min_side=100)
    assert faces == [] and any(r['reason'].startswith('too small (crop side') for r in rejected)
    with pytest.raises(DeepSEEError, match=r'^small.png: no usable face: 1 too small'):
        F_.require_faces(small, "small.png", min_side=100)

@pytest.mark.parametrize('convention,size', [('celeba', 128), ('ffhq', 256)])
def test_parse_is_plausible(photos, convention, size):
    "Skin, eyes, brows, nose, lips and hair where they belong; l_* on the image's right (the person's left)."
    for who in ('astronaut', 'hopper'):
        (f,) = detect_faces(photos[who], convention, size)
        lab = parse_face(photos[who], f)
        assert lab.shape == (size, size) and lab.dtype == np.uint8
        st = region_stats(lab)
        assert {'skin', 'nose', 'u_lip', 'l_lip', 'l_brow', 'r_brow', 'hair'} <= set(st)
        assert st['l_brow'][1] > 0.5 > st['r_brow'][1]
        assert st['l_brow'][2] < st['nose'][2] < st['u_lip'][2] < st['l_lip'][2]
        if who == 'astronaut':
            assert st['l_eye'][1] > 0.5 > st['r_eye'][1] and st['l_eye'][2] < st['nose'][2]
            assert st['hair'][2] < st['l_brow'][2]
        else:
            assert st['eye_g'][0] > 0.02

def test_left_right_by_geometry_on_mirrored_faces(photos):
    "The parser's own l/r follows the face's asymmetries (a mirrored face keeps the mirrored names); geometry fixes it."
    from deepsee.core import flip_labels
    for who in ('astronaut', 'hopper'):
        (f,) = detect_faces(photos[who], 'celebamaskhq', 512)
        a, b = parse_aligned(np.stack([f.crop, f.crop[:, ::-1]]), size=128, sides='parser')
        assert region_stats(a)['l_brow'][1] > 0.5 > region_stats(b)['l_brow'][1]       # the parser's finding
        a, b = parse_aligned(np.stack([f.crop, f.crop[:, ::-1]]), size=128)             # sides='geometry'
        for lab in (a, b):
            st = region_stats(lab)
            assert st['l_brow'][1] > 0.5 > st['r_brow'][1] and st['l_ear'][1] > 0.5 > st['r_ear'][1]
        fb = flip_labels(b)     # mirrored back, l/r swapped: where both parses see the same part, the same side
        for k in ('eye', 'brow', 'ear'):
            both = np.isin(a, [LABEL_INDEX[f'l_{k}'], LABEL_INDEX[f'r_{k}']]) & np.isin(fb, [LABEL_INDEX[f'l_{k}'], LABEL_INDEX[f'r_{k}']])
            assert (a[both] == fb[both]).all() and (both.sum() > 20 or k == 'eye')

@pytest.mark.parametrize('factor', [1, 3])
def test_paste_back_leaves_outside_untouched(photos, factor):
    img = photos['hopper']
    (f,) = detect_faces(img, 'celeba', 128)
    lab = parse_face(img, f)
    H, W = img.shape[:2]
    photo = img if factor == 1 else np.asarray(Image.fromarray(img).resize((W * factor, H * factor), Image.BICUBIC))
    sr = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)   # a face of pure noise
    out = paste_back(photo, f, sr, lab)
    alpha, (x0, y0, x1, y1) = paste_mask(photo.shape, f, lab)
    full = np.zeros(photo.shape[:2], np.float32); full[y0:y1, x0:x1] = alpha
    assert out.shape == photo.shape and (out[full == 0] == photo[full == 0]).all()
    assert (out[full > 0.5] != photo[full > 0.5]).any()
    ys, xs = np.nonzero((out != photo).any(-1))
    bx0, by0, bx1, by1 = (v * factor for v in f.box)
    margin = 0.25 * (bx1 - bx0)
    assert xs.min() > bx0 - margin and xs.max() < bx1 + margin and ys.min() > by0 - margin and ys.max() < by1 + margin

def test_label_cli_end_to_end(photos, tmp_path):
    from deepsee.data import FolderFaces
    from deepsee.imageio import read_labels
    from deepsee.cli import main as cli_main
    src, out = tmp_path / 'photos', tmp_path / 'dataset'
    src.mkdir()
    Image.fromarray(photos['astronaut']).save(src / 'astronaut.png')
    Image.fromarray(photos['hopper']).save(src / 'hopper.jpg', quality=95)
    Image.fromarray(photos['hopper'][:, ::-1]).save(src / 'hopper.png')   # same stem: names keep the extension
    Image.fromarray(photos['coffee']).save(src / 'coffee.jpg')
    (src / 'broken.jpg').write_bytes(b'not a jpeg at all')
    (src / 'notes.txt').write_text('not an image')
    assert main_label(['-i', str(src), '-o', str(out), '--convention', 'celeba', '--quiet']) == 0
    stems = sorted(p.stem for p in (out / 'images').iterdir())
    assert stems == ['astronaut_0', 'hopper_jpg_0', 'hopper_png_0'] == sorted(p.stem for p in (out / 'masks').iterdir())
    for s in stems:
        m = read_labels(out / 'masks' / f'{s}.png')
        assert m.shape == (128, 128) and m.max() <= 18 and (m == LABEL_INDEX['skin']).mean() > 0.1
        assert Image.open(out / 'images' / f'{s}.png').size == (128, 128)
    rep = json.loads((out / 'report.json').read_text())
    assert rep['photos'] == 5 and rep['n_faces'] == 3 and rep['n_skipped_photos'] == 2
    assert {r['photo']: r['reason'].split(' (')[0] for r in rep['skipped_photos']} == {'broken.jpg': 'unreadable', 'coffee.jpg': 'no face found'}
    assert rep['skip_counts'] == {'unreadable': 1, 'no face found': 1}
    assert {r['photo'] for r in rep['faces']} == {'astronaut.png', 'hopper.jpg', 'hopper.png'}
    assert all(len(r['transform']) == 2 for r in rep['faces'])
    ds = FolderFaces(out, hr_size=128, factor=8)
    assert len(ds) == 3 and ds[1]['labels'].shape == (128, 128)
    # the mirrored photo's mask is the mirror of the original's, with left and right swapped (geometry decides)
    from deepsee.core import flip_labels
    a, b = read_labels(out / 'masks' / 'hopper_jpg_0.png'), read_labels(out / 'masks' / 'hopper_png_0.png')
    assert (flip_labels(b) == a).mean() > 0.9
    # the dataset is not overwritten by accident; through the CLI that is exit code 2
    with pytest.raises(DeepSEEError, match='already holds a labelled dataset'):
        main_label(['-i', str(src), '-o', str(out), '--quiet'])
    assert cli_main(['label', '-i', str(src), '-o', str(out), '--quiet']) == 2
    assert cli_main(['label', '-i', str(tmp_path / 'nope'), '-o', str(tmp_path / 'x')]) == 2

def test_upscale_faces_cli_reproducible(photos, tiny, tmp_path):
    mdir = tiny.save(tmp_path / 'model')
    Image.fromarray(photos['astronaut']).save(tmp_path / 'astronaut.png')
    argv = ['-i', str(tmp_path / 'astronaut.png'), '--model', str(mdir), '--samples', '2', '--seed', '3', '--factor', '2', '--crops']
    assert main_upscale_faces(argv + ['-o', str(tmp_path / 'a')]) == 0
    assert main_upscale_faces(argv + ['-o', str(tmp_path / 'b')]) == 0
    names = sorted(str(p.relative_to(tmp_path / 'a')) for p in (tmp_path / 'a').rglob('*.*'))
    assert names == ['astronaut_face0_lr.png', 'astronaut_face0_mask.png', 'astronaut_face0_sr0.png', 'astronaut_face0_sr1.png',
                     'astronaut_face0_sr2.png', 'astronaut_faces.json', 'astronaut_faces.png',
                     'astronaut_faces_samples/000.png', 'astronaut_faces_samples/001.png']
    for n in names:
        assert (tmp_path / 'a' / n).read_bytes() == (tmp_path / 'b' / n).read_bytes(), n
    srs = [np.asarray(Image.open(tmp_path / 'a' / f'astronaut_face0_sr{k}.png')) for k in range(3)]
    assert not np.array_equal(srs[0], srs[1]) and not np.array_equal(srs[1], srs[2])
    info = json.loads((tmp_path / 'a' / 'astronaut_faces.json').read_text())
    assert info['factor'] == 2 and info['mask'] == 'parse' and len(info['faces']) == 1 and info['samples'] == 2
    assert Image.open(tmp_path / 'a' / 'astronaut_faces.png').size == (1024, 1024)
    assert Image.open(tmp_path / 'a' / 'astronaut_face0_lr.png').size == (16, 16)
    # no face: a one-line error naming the photo
    Image.fromarray(photos['coffee']).save(tmp_path / 'coffee.png')
    with pytest.raises(DeepSEEError, match=r'coffee.png: no face found'):
        main_upscale_faces(['-i', str(tmp_path / 'coffee.png'), '--model', str(mdir), '-o', str(tmp_path / 'c')])

def test_guide_and_default_factor(photos, tiny):
    img = photos['astronaut']
    plain = upscale_faces(tiny, img)
    # default factor: the model's (8x for 16 -> 128)
    assert plain.factor == 8 and plain.photos[0].shape == (8 * 512, 8 * 512, 3)
    plain = upscale_faces(tiny, img, factor=1)
    assert plain.factor == 1 and plain.photos[0].shape == img.shape
    guided = upscale_faces(tiny, img, factor=1, guide=photos['hopper'])
    assert not np.array_equal(plain.sr[0], guided.sr[0])
    with pytest.raises(DeepSEEError, match=r'guide: no face found'):
        upscale_faces(tiny, img, guide=photos['coffee'])
    with pytest.raises(DeepSEEError, match='no segmenter'):
        upscale_faces(tiny, img, mask='segmenter')
    # mask 'auto': a bundle's segmenter, unless the bundle saw procedural faces only (then the parse of the photo)
    torch.manual_seed(0)
    seg = DeepSEE(preset('tiny'), segmenter=True).eval()
    assert upscale_faces(seg, img, factor=1).mask_mode == 'segmenter'
    seg.meta['data'] = 'synthetic:2000 (procedural faces, synthetic)'
    assert upscale_faces(seg, img, factor=1).mask_mode == 'parse'
    assert upscale_faces(seg, img, factor=1, mask='segmenter').mask_mode == 'segmenter'
    # --consistent: every SR face downsamples back to its LR crop (within the projection's tolerance)
    from deepsee.core import downsample
    res = upscale_faces(tiny, img, factor=1, consistent=True)
    sr = torch.from_numpy(res.sr[0]).permute(0, 3, 1, 2).float() / 127.5 - 1
    lr = torch.from_numpy(res.lr).permute(0, 3, 1, 2).float()
    assert ((downsample(sr, 8) + 1) * 127.5 - lr).abs().max() < 3


def _cli(args, capsys):
    from deepsee.cli import main as cli_main
    rc = cli_main(['upscale', '--faces'] + [str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err

def test_upscale_faces_whole_photo(photos, tiny, tmp_path, capsys):
    "Through `deepsee upscale --faces`: the model's factor, the face pasted, every pixel away from it the plain resize."
    mdir = tiny.save(tmp_path / 'model')
    Image.fromarray(photos['astronaut']).save(tmp_path / 'astronaut.png')
    rc, out, err = _cli(['-i', tmp_path / 'astronaut.png', '-o', tmp_path / 'out', '--model', mdir], capsys)
    assert rc == 0, err
    assert 'photo upscaled 8x' in out and f"{tmp_path / 'out' / 'astronaut_faces.png'}" in out
    res = np.asarray(Image.open(tmp_path / 'out' / 'astronaut_faces.png'))
    assert res.shape == (8 * 512, 8 * 512, 3)                                   # factor x input size
    plain = np.asarray(Image.fromarray(photos['astronaut']).resize((4096, 4096), Image.BICUBIC))
    (f,) = detect_faces(photos['astronaut'], 'celeba', 128)
    x0, y0, x1, y1 = (8 * v for v in f.box)
    m = 0.5 * (x1 - x0)                                                         # half a face box away
    far = np.ones(res.shape[:2], bool); far[int(y0 - m):int(y1 + m), int(x0 - m):int(x1 + m)] = False
    assert far.mean() > 0.8 and (res[far] == plain[far]).all()                  # the rest of the photo: untouched
    box = (slice(int(y0), int(y1)), slice(int(x0), int(x1)))
    assert (res[box] != plain[box]).any(-1).mean() > 0.3                        # the face was pasted
    changed = (res != plain).any(-1)
    ys, xs = np.nonzero(changed)
    assert xs.min() > x0 - m and xs.max() < x1 + m and ys.min() > y0 - m and ys.max() < y1 + m
    # a soft mask: the parse's face regions, feathered; exactly the plain resize wherever its weight is 0
    alpha, (wx0, wy0, wx1, wy1) = paste_mask(res.shape, f, parse_face(photos['astronaut'], f, size=128))
    full = np.zeros(res.shape[:2], np.float32); full[wy0:wy1, wx0:wx1] = alpha
    assert (res[full == 0] == plain[full == 0]).all() and not changed[full == 0].any()
    assert ((full > 0.05) & (full < 0.95)).sum() > 0.1 * (full > 0).sum()        # feathered, not a hard edge
    info = json.loads((tmp_path / 'out' / 'astronaut_faces.json').read_text())
    assert info['factor'] == 8 and len(info['faces']) == 1
    # -s/--scale chooses another factor
    rc, out, err = _cli(['-i', tmp_path / 'astronaut.png', '-o', tmp_path / 'out2', '--model', mdir, '-s', '2'], capsys)
    assert rc == 0, err
    assert Image.open(tmp_path / 'out2' / 'astronaut_faces.png').size == (1024, 1024)
    rc, out, err = _cli(['-i', tmp_path / 'astronaut.png', '-o', tmp_path / 'out3', '--model', mdir, '-s', '0'], capsys)
    assert rc == 2 and err.strip() == 'deepsee upscale: error: -s/--scale 0: must be positive'

def test_upscale_faces_folder(photos, tiny, tmp_path, capsys):
    "Every image of a folder: two photos with faces give two outputs; a photo without one is a note and skipped."
    mdir = tiny.save(tmp_path / 'model')
    src = tmp_path / 'photos'; src.mkdir()
    Image.fromarray(photos['astronaut']).save(src / 'astronaut.png')
    Image.fromarray(photos['hopper']).save(src / 'hopper.jpg', quality=95)
    Image.fromarray(photos['coffee']).save(src / 'coffee.jpg')
    (src / 'notes.txt').write_text('not an image')
    rc, out, err = _cli(['-i', src, '-o', tmp_path / 'out', '--model', mdir, '-s', '1'], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / 'out').glob('*.png')) == ['astronaut_faces.png', 'hopper_faces.png']
    assert Image.open(tmp_path / 'out' / 'hopper_faces.png').size == photos['hopper'].shape[1::-1]
    assert err.strip() == f"deepsee upscale: note: {src / 'coffee.jpg'}: no face found (dlib finds frontal faces of " \
                          f"about 40 px and more); skipped"
    assert len(out.strip().splitlines()) == 3 and '2 photo(s) written' in out
    # a folder without any usable face is an error
    empty = tmp_path / 'nofaces'; empty.mkdir()
    Image.fromarray(photos['coffee']).save(empty / 'coffee.png')
    rc, out, err = _cli(['-i', empty, '-o', tmp_path / 'o2', '--model', mdir, '-s', '1'], capsys)
    assert rc == 2 and err.strip().splitlines()[-1] == f"deepsee upscale: error: {empty}: none of its 1 photos has a usable face"

def test_upscale_faces_never_overwrites(photos, tiny, tmp_path, capsys):
    mdir = tiny.save(tmp_path / 'model')
    src = tmp_path / 'photos'; src.mkdir()
    Image.fromarray(photos['astronaut']).save(src / 'astronaut.png')
    args = ['-i', src / 'astronaut.png', '--model', mdir, '-s', '1', '--quiet']
    rc, out, err = _cli(args + ['-o', tmp_path / 'out'], capsys)
    assert rc == 0 and out == '', err
    before = (tmp_path / 'out' / 'astronaut_faces.png').read_bytes()
    rc, out, err = _cli(args + ['-o', tmp_path / 'out', '--seed', '5'], capsys)
    assert rc == 2 and err.strip() == (f"deepsee upscale: error: {tmp_path / 'out' / 'astronaut_faces.png'}: exists "
                                       "(and 1 more outputs); pass --overwrite to replace, or choose another output folder (-o)")
    assert (tmp_path / 'out' / 'astronaut_faces.png').read_bytes() == before
    rc, out, err = _cli(args + ['-o', tmp_path / 'out', '--overwrite'], capsys)
    assert rc == 0, err
    # an output that is an input: refused even with --overwrite (here a photo named like an output, in -o)
    Image.fromarray(photos['hopper']).save(src / 'astronaut_faces.png')
    before = (src / 'astronaut_faces.png').read_bytes()
    rc, out, err = _cli(['-i', src, '-o', src, '--model', mdir, '-s', '1', '--overwrite'], capsys)
    assert rc == 2 and err.strip() == (f"deepsee upscale: error: {src / 'astronaut_faces.png'}: would overwrite the input "
                                       f"{src / 'astronaut_faces.png'}; choose another output folder (-o)")
    assert (src / 'astronaut_faces.png').read_bytes() == before and sorted(p.name for p in src.iterdir()) == [
        'astronaut.png', 'astronaut_faces.png']

def test_upscale_help_lists_faces(capsys):
    from deepsee.faces import main_upscale          # the `deepsee upscale` command: face crops, or photos with --faces
    assert main_upscale(['--help']) == 0
    assert '--faces' in capsys.readouterr().out
    assert main_upscale(['--faces', '--help']) == 0
    h = capsys.readouterr().out
    assert 'usage: deepsee upscale --faces' in h and '-s F, --scale F, --factor F' in h and '--overwrite' in h
