"""The explorer in a real browser: `deepsee explorer` (Voila on 127.0.0.1), and `Explorer(model)` in a JupyterLab
notebook, driven by Playwright in Debian's Chromium (launched by path, headless; nothing is downloaded).

The server gets a random-weight tiny bundle (the bundled demo model when it is installed) and writes its state to
`$DEEPSEE_EXPLORER_DEBUG/state.npz` after every render: that is how the tests read back what reached the model.
Any `pageerror` fails the test that saw it; requests that leave 127.0.0.1 are blocked.
"""
from __future__ import annotations
import contextlib, importlib.util, io, json, os, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import numpy as np
import pytest

CHROMIUM = os.environ.get('DEEPSEE_CHROMIUM', '/usr/bin/chromium')
ROOT = Path(__file__).resolve().parents[1]
_missing = [m for m in ('playwright', 'voila', 'ipycanvas') if importlib.util.find_spec(m) is None]
pytestmark = [
    pytest.mark.skipif(bool(_missing), reason=f"browser tests need {', '.join(_missing)} (pip install playwright voila ipycanvas)"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)"),
]
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
                 '--no-first-run', '--disable-dev-shm-usage']
LATENCY: dict[str, list[float]] = {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def _wait_tcp(port: int, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None: raise RuntimeError(f"explorer server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(('127.0.0.1', port)) == 0: return
        time.sleep(0.3)
    raise TimeoutError(f"explorer server not listening after {timeout} s:\n{log.read_text()[-3000:]}")


def _model(d: Path) -> str:
    "The model the servers get: $DEEPSEE_EXPLORER_TEST_MODEL, the bundled demo model, else a random tiny bundle."
    demo = ROOT / 'deepsee' / 'assets' / 'demo'
    if os.environ.get('DEEPSEE_EXPLORER_TEST_MODEL'): return os.environ['DEEPSEE_EXPLORER_TEST_MODEL']
    if (demo / 'model.safetensors').exists(): return str(demo)
    if not (d / 'model.safetensors').exists():
        from deepsee.explore import random_model
        random_model('tiny', seed=0).save(d)
    return str(d)


def _env(d: Path, model: str) -> dict:
    "Isolated Jupyter dirs, the kernel's debug state dir, one OpenMP thread (the test machine is shared)."
    for k in ('debug', 'jcfg', 'jdata', 'jrt'): (d / k).mkdir(exist_ok=True)
    return dict(os.environ, DEEPSEE_EXPLORER_DEBUG=str(d / 'debug'), DEEPSEE_EXPLORER_MODEL=model, OMP_NUM_THREADS='1',
                PYTHONWARNINGS='ignore', JUPYTER_CONFIG_DIR=str(d / 'jcfg'), JUPYTER_DATA_DIR=str(d / 'jdata'),
                JUPYTER_RUNTIME_DIR=str(d / 'jrt'), JUPYTER_PLATFORM_DIRS='1')


@contextlib.contextmanager
def _serve(cmd: list[str], env: dict, d: Path, port: int):
    "Run a server in its own process group until the block ends; yields once its port accepts connections."
    log = d / 'server.log'
    with open(log, 'wb') as f:
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, cwd=d, start_new_session=True)
    try:
        _wait_tcp(port, proc, log)
        yield dict(url=f'http://127.0.0.1:{port}/', port=port, debug=d / 'debug', log=log, proc=proc)
    finally:
        try: os.killpg(proc.pid, signal.SIGTERM)          # the server's own process group: the server and its kernels
        except ProcessLookupError: pass
        try: proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL); proc.wait(5)


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    return _model(tmp_path_factory.mktemp('model'))


@pytest.fixture(scope='module')
def server(tmp_path_factory, models):
    "`deepsee explorer --model M --port P` (through `main_explorer`)."
    d = tmp_path_factory.mktemp('voila')
    port = _free_port()
    cmd = [sys.executable, '-c', 'import sys; from deepsee.widgets import main_explorer; sys.exit(main_explorer(sys.argv[1:]))',
           '--model', models, '--port', str(port)]
    with _serve(cmd, _env(d, models), d, port) as srv: yield srv


@pytest.fixture(scope='module')
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope='module')
def page(server, browser):
    pg = browser.new_page(viewport={'width': 1300, 'height': 1000})
    errors: list[str] = []
    pg.on('pageerror', lambda e: errors.append(str(e)))
    pg.route('**/*', lambda r: r.continue_() if r.request.url.startswith('http://127.0.0.1') else r.abort())
    pg.goto(server['url'], timeout=120_000)
    pg.wait_for_selector('.t-explorer', timeout=120_000)
    wait_state(server, lambda s: True, 60)
    pg.wait_for_function("""() => { const c = document.querySelector('canvas.t-mask'); if (!c) return false;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < d.length; i += 4) if (d[i]) return true; return false; }""", timeout=60_000)
    pg.errors = errors
    yield pg
    pg.close()


@pytest.fixture(autouse=True)
def _no_page_errors(request):
    yield
    if 'page' in request.fixturenames:
        errs = request.getfixturevalue('page').errors
        assert not errs, f"page errors: {errs}"


def read_state(server) -> dict:
    with np.load(server['debug'] / 'state.npz') as z: return {k: z[k] for k in z.files}


def wait_state(server, pred, timeout: float = 30) -> dict:
    t0, last = time.time(), None
    while time.time() - t0 < timeout:
        if (server['debug'] / 'state.npz').exists():
            last = read_state(server)
            if pred(last): return last
        time.sleep(0.05)
    raise TimeoutError(f"kernel state did not reach the expected value in {timeout} s (last renders: "
                       f"{None if last is None else int(last['renders'])})")


def sr_src(page) -> str:
    return page.get_attribute('img.t-sr', 'src') or ''


def wait_src_change(page, old: str, timeout: float = 30_000) -> float:
    t0 = time.perf_counter()
    page.wait_for_function("old => (document.querySelector('img.t-sr').getAttribute('src') || '') !== old", arg=old,
                           timeout=timeout, polling=5)
    return (time.perf_counter() - t0) * 1e3


def test_explorer_renders(server, page):
    "The page shows the LR, bicubic and DeepSEE images, the painted mask, 19 labels; screenshot for the README."
    for sel in ('img.t-lr', 'img.t-bicubic', 'img.t-sr', 'canvas.t-mask', '.t-walk', '.t-sample', 'canvas.t-gallery'):
        assert page.is_visible(sel), sel
    assert page.locator('button[class*="t-label-"]').count() == 19
    assert 'render' in page.inner_text('.t-status')
    s = read_state(server)
    assert s['renders'] >= 1 and np.array_equal(s['model_mask'], s['mask'])


def test_slider_updates_image(server, page):
    "Keyboard and mouse on the walk slider of one region: a new image, and only that region's style row changed."
    page.click('.t-label-hair')
    before = wait_state(server, lambda s: int(s['region']) == 13)
    renders, src = int(before['renders']), sr_src(page)
    page.focus('.t-walk .noUi-handle')
    page.keyboard.press('ArrowRight')
    ms = wait_src_change(page, src)
    LATENCY.setdefault('key', []).append(ms)
    s = wait_state(server, lambda s: int(s['renders']) > renders)
    changed = np.nonzero((s['style'] != before['style']).any(-1))[0].tolist()
    assert changed == [13] and np.array_equal(s['model_style'], s['style'])
    assert np.allclose(s['style'][13], np.clip(before['style'][13] + float(s['offset']), -1, 1), atol=1e-6) and float(s['offset']) > 0
    # the mouse: drag the handle to the right
    renders, src = int(s['renders']), sr_src(page)
    h = page.locator('.t-walk .noUi-handle').bounding_box()
    x, y = h['x'] + h['width'] / 2, h['y'] + h['height'] / 2
    page.mouse.move(x, y); page.mouse.down(); page.mouse.move(x + 30, y, steps=5)
    page.mouse.up()
    LATENCY.setdefault('mouse', []).append(wait_src_change(page, src))
    s2 = wait_state(server, lambda q: int(q['renders']) > renders)
    assert float(s2['offset']) > float(s['offset'])
    assert int(s2['deferred']) >= 2          # renders ran debounced on the kernel's event loop, not inline
    assert np.nonzero((s2['style'] != before['style']).any(-1))[0].tolist() == [13]
    for _ in range(3):                                     # a few more key presses for the latency figure
        src = sr_src(page); page.keyboard.press('ArrowLeft'); LATENCY['key'].append(wait_src_change(page, src))
    print(f"\nslider -> new image in the browser: key {['%.0f' % v for v in LATENCY['key']]} ms, mouse "
          f"{['%.0f' % v for v in LATENCY['mouse']]} ms")


def paint_stroke(page, server) -> None:
    "Paint 'hat' with the mouse across the mask canvas; check the kernel's mask and the mask the model received."
    page.click('.t-label-hat')
    page.click('.t-tool button:has-text("paint")')
    before = wait_state(server, lambda s: int(s['region']) == 14)
    renders = int(before['renders'])
    cv = page.locator('canvas.t-mask')
    cv.scroll_into_view_if_needed()
    b = cv.bounding_box()
    H = before['mask'].shape[0]
    scale = b['width'] / H
    (x0, y0), (x1, y1) = (0.25 * H, 0.8 * H), (0.7 * H, 0.8 * H)           # mask pixels
    page.mouse.move(b['x'] + x0 * scale, b['y'] + y0 * scale)
    page.mouse.down()
    page.mouse.move(b['x'] + x1 * scale, b['y'] + y1 * scale, steps=12)
    page.mouse.up()
    s = wait_state(server, lambda q: int(q['renders']) > renders)
    changed = s['mask'] != before['mask']
    assert changed.any() and (s['mask'][changed] == 14).all()
    assert np.array_equal(s['model_mask'], s['mask'])                  # the labels that reached the model, exactly
    r = H // 32 + 1.5                                                   # brush radius (default H/32) + 1 px slack
    yy, xx = np.mgrid[:H, :H]
    t = np.clip((xx - x0) / (x1 - x0), 0, 1)
    near = (xx - (x0 + t * (x1 - x0))) ** 2 + (yy - y0) ** 2 <= r * r
    assert not (changed & ~near).any(), "pixels outside the stroke changed"
    line = s['mask'][int(y0), int(x0) + 2:int(x1) - 1]
    assert (line == 14).all(), "the stroke's centre line is not all 'hat'"


def test_stroke_reaches_model(server, page):
    "A stroke painted with the mouse: exactly the stroked pixels become that label, and the model gets that mask."
    paint_stroke(page, server)


def test_gallery_click_changes_image(server, page, tmp_path):
    "New samples, then a click on the third thumbnail: it becomes the current style and image."
    page.check('.t-all input[type=checkbox]')              # sample the whole style matrix
    renders = int(read_state(server)['renders'])
    page.click('.t-sample')
    s = wait_state(server, lambda q: 'gallery' in q and int(q.get('gallery_shown', 0)) > 0, 60)
    src = sr_src(page)
    g = page.locator('canvas.t-gallery')
    g.scroll_into_view_if_needed()
    b = g.bounding_box()
    thumb = b['height']
    page.mouse.click(b['x'] + 2 * (thumb + 4) + thumb / 2, b['y'] + thumb / 2)
    wait_src_change(page, src)
    s = wait_state(server, lambda q: int(q['renders']) > renders and np.array_equal(q['style'], q['gallery'][2]))
    assert np.array_equal(s['model_style'], s['gallery'][2])
    page.evaluate('window.scrollTo(0, 0)')                 # the README's screenshot: after a stroke and a gallery pick
    box = page.locator('.t-explorer').bounding_box()
    png = page.screenshot(clip=dict(x=box['x'], y=box['y'], width=min(box['width'], 1280), height=min(box['height'], 900)))
    from PIL import Image
    from deepsee.walks import save_small
    # the README's figure only on request (DEEPSEE_UPDATE_FIGURES=1): a test run leaves the repository's files alone
    where = ROOT / 'figures' if os.environ.get('DEEPSEE_UPDATE_FIGURES') else tmp_path
    out = save_small(Image.open(io.BytesIO(png)), where / 'explorer.png', limit=300_000)
    assert out.stat().st_size <= 300_000


def test_get_root_answers_200(server):
    "`GET /` answers 200 (Voila renders the explorer page)."
    with urllib.request.urlopen(server['url'], timeout=120) as r:
        assert r.status == 200 and b'<html' in r.read(4096).lower()


@pytest.fixture(scope='module')
def lab(tmp_path_factory, models):
    "JupyterLab (token off, isolated dirs, announcements off) with a one-cell notebook: `Explorer(model)`."
    pytest.importorskip('jupyterlab', reason='the JupyterLab test needs jupyterlab')
    import nbformat
    d = tmp_path_factory.mktemp('lab')
    env = _env(d, models)
    (d / 'jcfg' / 'labconfig').mkdir(parents=True, exist_ok=True)
    (d / 'jcfg' / 'labconfig' / 'page_config.json').write_text(json.dumps(
        {'disabledExtensions': {'@jupyterlab/apputils-extension:announcements': True}}))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import os\nfrom deepsee.widgets import Explorer\nExplorer(os.environ['DEEPSEE_EXPLORER_MODEL'])")])
    nb.metadata['kernelspec'] = dict(name='python3', display_name='Python 3', language='python')
    nbformat.write(nb, d / 'explorer.ipynb')
    port = _free_port()
    cmd = [sys.executable, '-m', 'jupyterlab', '--no-browser', '--allow-root', f'--port={port}', '--ServerApp.ip=127.0.0.1',
           '--IdentityProvider.token=', '--ServerApp.port_retries=0', f'--ServerApp.root_dir={d}']
    with _serve(cmd, env, d, port) as srv: yield srv


def test_jupyterlab_one_line(lab, browser):
    "In JupyterLab, `Explorer(model)` in a cell opens the explorer, and painting reaches the model there too."
    pg = browser.new_page(viewport={'width': 1300, 'height': 1000})
    errors: list[str] = []
    pg.on('pageerror', lambda e: errors.append(str(e)))
    pg.route('**/*', lambda r: r.continue_() if r.request.url.startswith('http://127.0.0.1') else r.abort())
    try:
        pg.goto(lab['url'] + 'lab/tree/explorer.ipynb', timeout=120_000)
        pg.wait_for_selector('.jp-Notebook .jp-Cell .cm-content', timeout=90_000)
        pg.wait_for_selector('text=/Python 3 \\(ipykernel\\) \\| Idle/', timeout=90_000)   # the kernel is up
        for attempt in range(3):                  # a key press before the app has settled can be lost: retry
            pg.click('.jp-Notebook .jp-Cell .cm-content')
            pg.keyboard.press('Control+Enter')
            try:
                pg.wait_for_selector('.jp-Notebook .jp-Cell .jp-InputPrompt:has-text("[*]"), .t-explorer', timeout=10_000)
                break
            except Exception:
                if attempt == 2: raise
        pg.wait_for_selector('.t-explorer', timeout=90_000)
        wait_state(lab, lambda s: True, 60)
        pg.wait_for_function("""() => { const c = document.querySelector('canvas.t-mask'); if (!c) return false;
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            for (let i = 3; i < d.length; i += 4) if (d[i]) return true; return false; }""", timeout=60_000)
        paint_stroke(pg, lab)
        assert not errors, f"page errors: {errors}"
    except Exception as e:
        pg.screenshot(path=str(lab['log'].parent / 'failure.png'))
        out = pg.locator('.jp-OutputArea').all_inner_texts() if pg.locator('.jp-OutputArea').count() else []
        raise AssertionError(f"{e}\ncell output: {out}\nscreenshot: {lab['log'].parent / 'failure.png'}") from e
    finally: pg.close()
