"""The layout: one role per folder, and every import points down the tree.

    runtime.py, data/   process set-up; image I/O, datasets, masks (no project imports)
    models/             networks only
    weights/            checkpoints, the one weight-file reader, converters
    evaluation/         metrics, reports, panels
    inference/          loading, the Inpainter, export
    training/           config, batches, the step, data parallelism, the run folder
    train.py, test.py   the two scripts
    tools/              command-line entry points

Nothing imports a script or a tool; each layer imports only from layers below it.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RANKS = {'runtime': 0, 'data': 0, 'models': 1, 'weights': 2, 'evaluation': 3, 'inference': 3,
         'training': 4, 'train': 5, 'test': 5, 'tools': 6}


def project_files():
    files = [ROOT / 'runtime.py', ROOT / 'train.py', ROOT / 'test.py']
    for package in ('data', 'models', 'weights', 'evaluation', 'inference', 'training', 'tools'):
        files += sorted((ROOT / package).rglob('*.py'))
    return files


def imported_packages(path):
    """(line, top-level project name) of every absolute import in ``path``; a package's
    relative imports count as its own."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, name.split('.')[0]) for name in names
                  if name.split('.')[0] in RANKS]
    return found


@pytest.mark.parametrize('path', project_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down_the_tree(path):
    own = path.relative_to(ROOT).parts[0].removesuffix('.py')
    for line, name in imported_packages(path):
        if name == own:
            continue
        assert RANKS[name] < RANKS[own], f'{path.relative_to(ROOT)}:{line} imports {name}'


def test_models_hold_networks_only():
    """No converter, checkpoint or file reading in models/: a model file imports torch-free
    numerics, paddle and other model files (and data's image operations)."""
    for path in (ROOT / 'models').glob('*.py'):
        text = path.read_text()
        assert 'CONVERTERS' not in text and 'def convert' not in text, path.name
        assert 'open(' not in text and 'read_weights' not in text, path.name
