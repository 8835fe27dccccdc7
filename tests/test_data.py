"Multi-process checks of deepsee.data: loader workers and preparation workers give the same results as one process."
import numpy as np, torch
from PIL import Image
from deepsee.imageio import read_labels
from deepsee.data import (SyntheticFaces, make_loader, set_loader_epoch, procedural_face, prepare_celebamaskhq,
                          read_split)


def _batches(num_workers):
    ds = SyntheticFaces(12, 32, 4, flip=True, guided=True, n_identities=3)
    dl = make_loader(ds, batch_size=4, shuffle=True, seed=7, num_workers=num_workers)
    out = []
    for epoch in (0, 1):
        set_loader_epoch(dl, epoch)
        out += [(b['name'], b['hr'], b['guide']) for b in dl]
    return out


def test_loader_workers_match_single_process():
    a, b = _batches(0), _batches(2)
    assert len(a) == len(b) == 6
    for (na, ha, ga), (nb, hb, gb) in zip(a, b):
        assert list(na) == list(nb) and torch.equal(ha, hb) and torch.equal(ga, gb)
    assert [n for n, _, _ in a[:3]] != [n for n, _, _ in a[3:]]   # epochs differ


def test_prepare_celebamaskhq_workers(tmp_path):
    root = tmp_path / 'hq'; (root / 'CelebA-HQ-img').mkdir(parents=True)
    lines = ['idx orig_idx orig_file']
    for k in range(6):
        img, lab = procedural_face(64, k)
        Image.fromarray(img).save(root / 'CelebA-HQ-img' / f'{k}.jpg')
        d = root / 'CelebAMask-HQ-mask-anno' / '0'; d.mkdir(parents=True, exist_ok=True)
        for part_index, part in ((1, 'skin'), (2, 'nose'), (13, 'hair'), (4, 'l_eye')):
            Image.fromarray(((lab == part_index) * 255).astype(np.uint8)).save(d / f'{k:05d}_{part}.png')
        lines.append(f'{k} {160000 + k * 5000} {160001 + k * 5000:06d}.jpg')
    (root / 'CelebA-HQ-to-CelebA-mapping.txt').write_text('\n'.join(lines) + '\n')
    one = prepare_celebamaskhq(root, tmp_path / 'a', 32, progress=False)
    two = prepare_celebamaskhq(root, tmp_path / 'b', 32, workers=2, progress=False)
    assert one == two and one['n'] == 6
    assert read_split(tmp_path / 'a') == read_split(tmp_path / 'b')
    for k in range(6):
        assert (read_labels(tmp_path / 'a' / 'masks' / f'{k}.png') == read_labels(tmp_path / 'b' / 'masks' / f'{k}.png')).all()
        m = read_labels(tmp_path / 'a' / 'masks' / f'{k}.png')
        full = procedural_face(64, k)[1]
        expect = np.where(np.isin(full, [1, 2, 13, 4]), full, 0)
        expect = np.asarray(Image.fromarray(expect.astype(np.uint8)).resize((32, 32), Image.NEAREST))
        assert (m == expect).all()
