"""The documentation renders offline: nbdev processes every notebook as `nbdev-docs` would, and each processed
notebook converts to HTML without errors. (Quarto itself cannot be installed offline; `nbdev-docs` builds the
site where it can.)"""
import json, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p.name for p in (ROOT / 'nbs').glob('*.ipynb'))

@pytest.fixture(scope='module')
def processed():
    r = subprocess.run([str(Path(sys.executable).parent / 'nbdev-proc-nbs'), '--force'], cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return ROOT / '_proc'

def _schema_clean(nb: dict) -> dict:
    "Drop the keys nbdev adds to cells for Quarto (e.g. `has_sd`) that the nbformat schema does not allow."
    allowed = {'cell_type', 'id', 'metadata', 'source', 'outputs', 'execution_count', 'attachments'}
    for c in nb['cells']:
        for k in set(c) - allowed: del c[k]
        c.get('metadata', {}).pop('execution', None)   # nbdev's timing floats, where the schema wants strings
    return nb

@pytest.mark.parametrize('name', NBS)
def test_notebook_renders_to_html(processed, name):
    import nbformat
    from nbconvert import HTMLExporter
    src = processed / name
    assert src.exists(), f'nbdev-proc-nbs did not produce {name}'
    nb = nbformat.reads(json.dumps(_schema_clean(json.loads(src.read_text()))), as_version=4)
    nbformat.validate(nb)
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert '<html' in html and len(html) > 1000
