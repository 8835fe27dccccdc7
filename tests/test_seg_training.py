"Slow tests of the segmenter training (deepsee.seg_training): exact resume, the CLI end to end, torchrun."
import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest
import torch
from safetensors.torch import load_file
from deepsee.core import DeepSEEError, preset
from deepsee.seg_training import load_segmenter, main_train_seg, train_segmenter

CFG = preset('tiny', factor=4)  # 16 -> 64 px: the smallest segmenter there is
KW = dict(batch_size=2, device='cpu', log_every=1, progress=False, weight_images=8)

@pytest.fixture(autouse=True)
def one_thread():
    "Tiny networks run faster on one thread (and far faster on a busy shared machine)."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

def _log(run):
    return [json.loads(l) for l in (Path(run) / 'seg' / 'log.jsonl').read_text().splitlines()]

def test_resume_is_exact(tmp_path):
    "Stopping after step 2 and resuming gives bit-identical weights and losses to the uninterrupted run."
    a, b = tmp_path / 'a', tmp_path / 'b'
    train_segmenter(CFG, 'synthetic:6', a, max_steps=5, save_every=2, **KW)  # 3 steps per epoch: crosses an epoch
    (b / 'seg' / 'checkpoints').mkdir(parents=True)
    shutil.copy(a / 'seg' / 'checkpoints' / 'step_00000002.pt', b / 'seg' / 'checkpoints')
    out = train_segmenter(CFG, 'synthetic:6', b, max_steps=5, save_every=2, resume=True, **KW)
    assert out['steps'] == 5
    wa, wb = load_file(a / 'segmenter' / 'model.safetensors'), load_file(b / 'segmenter' / 'model.safetensors')
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [r['loss'] for r in _log(a)][2:] == [r['loss'] for r in _log(b)]
    assert [r['step'] for r in _log(b)] == [3, 4, 5]

def test_refuses_to_overwrite_and_checks_config(tmp_path):
    train_segmenter(CFG, 'synthetic:4', tmp_path, max_steps=1, **KW)
    with pytest.raises(DeepSEEError, match='has segmenter checkpoints already'):
        train_segmenter(CFG, 'synthetic:4', tmp_path, max_steps=2, **KW)
    with pytest.raises(DeepSEEError, match='another configuration'):
        train_segmenter(preset('tiny'), 'synthetic:4', tmp_path, max_steps=2, resume=True, **KW)

def test_cli_end_to_end(tmp_path, capsys):
    run = tmp_path / 'run'
    argv = ['--preset', 'tiny', '--factor', '4', '--data', 'synthetic:6', '--max-steps', '3', '--run-dir', str(run),
            '--batch-size', '2', '--device', 'cpu', '--no-progress', '--eval-images', '4', '--save-every', '2', '--cache']
    assert main_train_seg(argv) == 0
    out = capsys.readouterr().out
    assert 'trained 3 steps' in out and 'held-out (4 images): acc' in out
    assert sorted(p.name for p in (run / 'seg' / 'checkpoints').iterdir()) == ['step_00000002.pt', 'step_00000003.pt']
    assert [r['step'] for r in _log(run)] == [3]
    scores = json.loads((run / 'seg' / 'test_scores.json').read_text())
    assert scores['n_images'] == 4 and 0 <= scores['acc'] <= 1 and len(scores['iou']) == 19
    seg = load_segmenter(run / 'segmenter')
    assert seg.cfg == CFG and seg.predict(torch.zeros(1, 3, 16, 16)).shape == (1, 64, 64)
    # resuming a finished run adds nothing, and a longer --max-steps continues it
    assert main_train_seg(argv + ['--resume']) == 0 and [r['step'] for r in _log(run)] == [3]
    assert main_train_seg(argv[:7] + ['4'] + argv[8:] + ['--resume']) == 0 and [r['step'] for r in _log(run)] == [3, 4]

@pytest.mark.parametrize('argv, msg', [(['--max-steps', '0'], '--max-steps: must be at least 1'),
                                        (['--preset', 'nope'], "unknown preset 'nope'"),
                                        (['--factor', '3'], 'factor must be 4, 8, 16 or 32')])
def test_cli_errors(tmp_path, argv, msg):
    with pytest.raises(DeepSEEError, match=msg):
        main_train_seg(['--data', 'synthetic:2', '--run-dir', str(tmp_path), '--preset', 'tiny'] + argv)

@pytest.mark.skipif(shutil.which('torchrun') is None and not (Path(sys.executable).parent / 'torchrun').exists(),
                    reason='torchrun not installed')
def test_torchrun_two_processes(tmp_path):
    "Two CPU processes (gloo): both train, rank 0 alone writes the checkpoints, log and bundle."
    torchrun = shutil.which('torchrun') or str(Path(sys.executable).parent / 'torchrun')
    code = ("import sys; from deepsee.seg_training import main_train_seg; "
            "sys.exit(main_train_seg(sys.argv[1:]))")
    script = tmp_path / 'ts.py'; script.write_text(code)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    r = subprocess.run([torchrun, '--nproc_per_node', '2', '--master_port', '29533', str(script),
                        '--preset', 'tiny', '--factor', '4', '--data', 'synthetic:8', '--max-steps', '2',
                        '--run-dir', str(tmp_path / 'run'), '--batch-size', '2', '--device', 'cpu', '--no-progress'],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count('trained 2 steps') == 1
    assert [p.name for p in (tmp_path / 'run' / 'seg' / 'checkpoints').iterdir()] == ['step_00000002.pt']
    assert load_segmenter(tmp_path / 'run' / 'segmenter').predict(torch.zeros(1, 3, 16, 16)).shape == (1, 64, 64)
