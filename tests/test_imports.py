"""The package's import graph: no cycles (imports inside functions count too), and the layers of the design:
core <- networks (architecture, fast, segmentation) <- model <- research, sessions <- explore <- widgets / CLI, and
data <- training. The network code imports nothing from data, training or the user interfaces."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / 'deepsee'
NETWORKS = {'architecture', 'fast', 'fast.lookup', 'fast.kernel', 'segmentation'}
NOT_FROM_NETWORKS = {'data', 'training', 'seg_training', 'explore', 'widgets', 'cli', 'faces', 'evaluation', 'metrics',
                     'reproduce', 'export', 'model', 'research', 'sessions'}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix('')
    parts = [p for p in rel.parts if p != '__init__']
    return '.'.join(parts)


def imports_of(path: Path) -> set[str]:
    "deepsee modules imported anywhere in `path` (relative and absolute, at module level or in functions)."
    name, out = module_name(path), set()
    package = name.split('.')[:-1] if path.name != '__init__.py' else name.split('.')
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
                target = '.'.join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith('deepsee'): target = node.module.removeprefix('deepsee').lstrip('.')
            else: continue
            mods = [target] if node.module else [f'{target}.{a.name}'.lstrip('.') for a in node.names]
            out.update(m for m in mods if m)
        elif isinstance(node, ast.Import):
            out.update(a.name.removeprefix('deepsee.') for a in node.names if a.name.startswith('deepsee.'))
    known = {module_name(p) for p in PKG.rglob('*.py')}
    return {m for m in out if m in known and m != name}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PKG.rglob('*.py') if p.name != '_modidx.py'}


def test_graph_sees_relative_and_function_imports():
    g = graph()
    assert 'core' in g['architecture'] and 'architecture' in g['fast.lookup'] and 'fast' in g['model']
    assert 'research' in g['explore']          # a lazy import inside load_model


def test_no_import_cycle():
    g, state, path = graph(), {}, []
    def visit(m):
        state[m] = 'open'; path.append(m)
        for n in sorted(g.get(m, ())):
            if state.get(n) == 'open': raise AssertionError('import cycle: ' + ' -> '.join(path[path.index(n):] + [n]))
            if n not in state: visit(n)
        state[m] = 'done'; path.pop()
    for m in sorted(g):
        if m not in state: visit(m)


def test_layers():
    g = graph()
    for m in NETWORKS:
        bad = g[m] & NOT_FROM_NETWORKS
        assert not bad, f'network module {m} imports {sorted(bad)}'
    assert not g['core'], f"core imports {sorted(g['core'])}"
    assert 'training' not in g['data'] and 'explore' not in g['training'] and 'widgets' not in g['explore']


def unresolved_names(module) -> set[str]:
    """Names `module` reads that nothing defines: not its globals after import (star imports included), not bound
    anywhere in its source (a local, an argument, an import inside a function), not a builtin. Notebook kernels hide
    these (an earlier cell defined the name); only the exported module shows them."""
    import builtins
    tree = ast.parse(Path(module.__file__).read_text())
    loaded, bound = set(), set(dir(builtins)) | set(vars(module))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name): (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.arg): bound.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split('.')[0] for a in node.names}
        elif isinstance(node, ast.ExceptHandler) and node.name: bound.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name: bound.add(node.name)
    return loaded - bound


def test_every_name_resolves():
    "Every exported module defines or imports each name it reads (the explorer once lost `to_uint8` this way)."
    import importlib, types
    bad = {}
    for p in sorted(PKG.rglob('*.py')):
        if p.name == '_modidx.py': continue
        mod = importlib.import_module('deepsee' + ('.' + module_name(p) if module_name(p) else ''))
        if names := unresolved_names(mod): bad[module_name(p)] = sorted(names)
    assert not bad, f"names read but defined nowhere: {bad}"
    fake = types.ModuleType('m')              # walks' source without its star import of core: the check sees the gap
    fake.__file__ = str(PKG / 'walks.py')
    assert {'DeepSEEError', 'downsample'} <= unresolved_names(fake) and 'save_small' not in unresolved_names(fake)
