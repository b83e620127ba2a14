"""Reads PyTorch checkpoints and Paddle ``.pdparams`` as numpy arrays without running their code.

``torch.load`` and ``paddle.load`` unpickle, so a downloaded weights file can execute anything.
This reader unpickles with an allow-list: only containers (dict, OrderedDict, list, tuple),
plain scalars and the few functions that rebuild tensors and numpy arrays are accepted; any other
global in the file is an error naming it. torch itself is never imported, so published weights
(torchvision VGG, the PyTorch ports' generators) load on a machine without torch.

Handles the zip format (torch >= 1.6: ``archive/data.pkl`` + one raw blob per storage), the
legacy format (torch 0.4 - 1.5: magic number, pickled header, storages appended) and pickled
dicts of numpy arrays (Paddle's ``.pdparams``, as every Paddle version's ``paddle.save`` writes
them: a flat state dict of arrays, or nested dicts whose tensors are ``(name, array)`` tuples).
Two release formats hold class instances next to the tensors, and are read with inert
placeholders instead of those classes:

- PyTorch Lightning checkpoints (``*.ckpt``, e.g. LaMa's ``big-lama/models/best.ckpt``): a dict
  with ``state_dict`` next to ``hyper_parameters`` (OmegaConf ``DictConfig`` objects),
  ``callbacks`` (keyed by Lightning classes) and ``optimizer_states``;
- TorchScript archives (``torch.jit.save`` of a traced or scripted module, e.g. IOPaint's
  ``big-lama.pt``): ``data.pkl`` rebuilds the module tree from ``__torch__.*`` classes whose
  state is a dict of attributes (submodules, parameters, buffers, flags). ``load`` returns the
  tree's parameters and buffers as nested dicts, so flattened names are the module's
  ``state_dict()`` names (TorchScript saves non-persistent buffers as buffers: they are included,
  as in the loaded archive's ``state_dict()``). ``code/`` is only scanned as text for each
  class's ``__parameters__`` / ``__buffers__`` lists, never compiled; ``constants.pkl`` is not
  read.

A global from ``INERT_MODULES`` (and ``typing.Any``) becomes a placeholder: a fresh subclass of
``_Inert`` named after the global. Why this runs no code from the file: ``find_class`` is the only
way a pickle obtains a callable, and it returns only objects defined here, numpy's array
rebuilders and a few builtin types (dict, list, tuple, int) whose constructors only compute on the
data given; nothing named in the file is imported, so the real omegaconf / Lightning / TorchScript
classes are never touched, not even their module's import-time code. Everything the pickle can
then do to a placeholder (call it through REDUCE / NEWOBJ / INST, give it state through BUILD,
items through APPEND(S) / SETITEM(S)) lands in ``_Inert``'s own methods, which only store
references. Placeholders are opaque to ``weights.read``: their content (hyper-parameters, callback
state) is dropped, only arrays in dicts and lists survive. Any other global is refused as before.
"""
import io
import pickle
import re
import struct
import zipfile

import numpy as np

LEGACY_MAGIC = 0x1950a86a20f9469cfc6c

STORAGE_DTYPES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
    'BFloat16Storage': None, 'LongStorage': np.int64, 'IntStorage': np.int32,
    'ShortStorage': np.int16, 'CharStorage': np.int8, 'ByteStorage': np.uint8,
    'BoolStorage': np.bool_,
}


INERT_MODULES = ('omegaconf', 'pytorch_lightning', '__torch__')
BUILTIN_TYPES = {'dict': dict, 'list': list, 'tuple': tuple, 'int': int,
                 'long': int}  # under protocol 2 the pickle names Python 2's __builtin__.long
JIT_LIST_BUILDERS = ('build_intlist', 'build_floatlist', 'build_doublelist', 'build_boollist',
                     'build_tensorlist', 'restore_type_tag')  # torch.jit._pickle: typed lists


class UnsafeFileError(ValueError):
    """The file asks the unpickler for something other than tensors and containers."""


class _StorageType:
    def __init__(self, name):
        if name not in STORAGE_DTYPES:
            raise UnsafeFileError(f'unsupported tensor storage torch.{name}')
        self.name, self.dtype = name, STORAGE_DTYPES[name]


def _bfloat16_to_float32(raw):
    return (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)


class _Storage:
    """A flat typed buffer; tensors are strided views into it."""

    def __init__(self, storage_type, raw):
        if storage_type.dtype is None:
            self.array = _bfloat16_to_float32(raw)
        else:
            self.array = np.frombuffer(raw, storage_type.dtype)


def _rebuild_tensor(storage, offset, size, stride, *_):
    flat = storage.array
    if not size:
        return np.array(flat[offset])
    itemsize = flat.itemsize
    view = np.lib.stride_tricks.as_strided(flat[offset:], shape=tuple(size),
                                           strides=tuple(s * itemsize for s in stride))
    return view.copy(order="C")  # owns its memory, C-contiguous


def _rebuild_parameter(data, *_):
    return data


class _Dict(dict):
    """OrderedDict stand-in; takes the ``_metadata`` attribute torch state dicts carry."""


class _InertType(type):
    """The metaclass of placeholders: one prints as the global it stands for (a dict key in
    Lightning's ``callbacks``)."""

    def __repr__(cls):
        return f'{cls.__module__}.{cls.__qualname__}'


class _Inert(metaclass=_InertType):
    """An instance of a placeholder class: it keeps what the pickle hands it and does nothing.

    ``args``, ``kwargs``: constructor arguments (REDUCE, NEWOBJ); ``state``: BUILD's argument
    (a TorchScript module's attribute dict); ``items``: APPEND(S) values, SETITEM(S) pairs.
    """

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls)
        self.args, self.kwargs, self.state, self.items = args, kwargs, None, []
        return self

    def __init__(self, *args, **kwargs):  # calling the class: __new__ kept the arguments
        pass

    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, key, value):
        self.items.append((key, value))

    def append(self, value):
        self.items.append(value)

    def extend(self, values):
        self.items.extend(values)


def _is_inert(module, name):
    return ((module, name) == ('typing', 'Any')
            or any(module == m or module.startswith(m + '.') for m in INERT_MODULES))


def _defaultdict(default_factory=None):
    """collections.defaultdict as a plain dict: the factory is dropped, nothing looks keys up."""
    return {}


def _untyped(value, *_):
    """torch.jit._pickle's typed-list builders and type tags: the value itself."""
    return value


PLAIN_GLOBALS = {
    ('collections', 'OrderedDict'): _Dict, ('collections', 'defaultdict'): _defaultdict,
    **{(module, name): type_ for module in ('builtins', '__builtin__')
       for name, type_ in BUILTIN_TYPES.items()},  # paddle.save's tuples, OmegaConf's types
    **{('torch.jit._pickle', name): _untyped for name in JIT_LIST_BUILDERS},
}


def _numpy_global(module, name):
    import numpy.core.multiarray as multiarray  # noqa: F401 (numpy 1.x and 2.x alias)
    allowed = {('numpy', 'ndarray'): np.ndarray, ('numpy', 'dtype'): np.dtype}
    if name == '_reconstruct' and module.endswith('multiarray'):
        return np.core.multiarray._reconstruct
    if name == 'scalar' and module.endswith('multiarray'):
        return np.core.multiarray.scalar
    return allowed.get((module, name))


class _Unpickler(pickle.Unpickler):
    """Allow-list unpickler; ``load_storage(storage_type, key)`` supplies tensor storages."""

    def __init__(self, file, load_storage=None, rebuild=_rebuild_tensor):
        super().__init__(file)
        self._load_storage, self._rebuild = load_storage, rebuild
        self._placeholders = {}

    def find_class(self, module, name):
        if (module, name) in PLAIN_GLOBALS:
            return PLAIN_GLOBALS[module, name]
        if _is_inert(module, name):
            return self._placeholder(module, name)
        if module == 'torch._utils' and name in ('_rebuild_tensor_v2', '_rebuild_tensor'):
            return self._rebuild
        if module == 'torch._utils' and name == '_rebuild_parameter':
            return _rebuild_parameter
        if module == 'torch' and name.endswith('Storage') and self._load_storage is not None:
            return _StorageType(name)
        if module.startswith('numpy'):
            found = _numpy_global(module, name)
            if found is not None:
                return found
        raise UnsafeFileError(f'refusing to load {module}.{name} (only tensors, numpy arrays '
                              'and plain containers are read)')

    def _placeholder(self, module, name):
        """A fresh ``_Inert`` subclass per global; nothing from ``module`` is imported."""
        key = (module, name)
        if key not in self._placeholders:
            attrs = {'__module__': module, '__qualname__': name}
            self._placeholders[key] = _InertType(name, (_Inert,), attrs)
        return self._placeholders[key]

    def persistent_load(self, pid):
        if self._load_storage is None or not (isinstance(pid, tuple) and pid
                                              and pid[0] == 'storage'):
            raise UnsafeFileError(f'unexpected persistent id {pid!r}')
        storage_type, key = pid[1], str(pid[2])
        if isinstance(storage_type, str):  # some versions store the type's name
            storage_type = _StorageType(storage_type)
        return self._load_storage(storage_type, key)


def _unpickle(data, path, load_storage):
    try:
        return _Unpickler(io.BytesIO(data), load_storage).load()
    except UnsafeFileError:
        raise
    except Exception as e:  # a malformed pickle, or one that misuses the placeholders
        raise ValueError(f'{path}: not a readable torch checkpoint ({e})') from None


# a TorchScript class header in code/: class Conv2d(Module):\n  __parameters__ = ["weight", ]\n  ...
_CLASS_HEADER = re.compile(r'^class (\w+)\(Module\):\n  __parameters__ = \[(.*)\]\n'
                           r'  __buffers__ = \[(.*)\]$', re.M)


def _declared_tensors(zf, prefix):
    """{(module, class): its parameter and buffer names} from the class headers in ``code/``,
    matched as text (never compiled): the state also holds plain tensor attributes."""
    declared = {}
    for name in zf.namelist():
        if name.startswith(f'{prefix}code/') and name.endswith('.py'):
            module = name[len(f'{prefix}code/'):-len('.py')].replace('/', '.')
            text = zf.read(name).decode('utf-8', 'replace')
            for cls, params, buffers in _CLASS_HEADER.findall(text):
                declared[module, cls] = set(re.findall(r'"([^"]*)"', params + buffers))
    return declared


def _module_tensors(module, declared):
    """A TorchScript module's parameters and buffers as nested dicts ({'conv': {'weight': a}}).

    Its BUILD state holds every attribute: submodules (placeholders), tensors, and flags such as
    ``training`` (dropped). Tensors its class header does not declare (plain attributes) are
    dropped too, unless the archive has no header for the class."""
    names = declared.get((type(module).__module__, type(module).__qualname__))
    tree = {}
    for name, value in (module.state if isinstance(module.state, dict) else {}).items():
        sub = _module_tensors(value, declared) if isinstance(value, _Inert) else None
        if isinstance(value, np.ndarray) and (names is None or name in names):
            tree[name] = value
        elif sub:  # submodules without tensors (ReLU) are left out
            tree[name] = sub
    return tree


def _load_zip(path):
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = next((n for n in names if n.endswith('data.pkl')), None)
        if pkl is None:
            raise ValueError(f'{path}: a zip file without data.pkl is not a torch checkpoint')
        prefix, cache = pkl[:-len('data.pkl')], {}

        def load_storage(storage_type, key):
            if key not in cache:
                cache[key] = _Storage(storage_type, zf.read(f'{prefix}data/{key}'))
            return cache[key]

        obj = _unpickle(zf.read(pkl), path, load_storage)
        if not _is_torchscript(names, prefix):
            return obj
        if not isinstance(obj, _Inert):
            raise ValueError(f'{path}: a TorchScript archive whose data.pkl holds no module')
        return _module_tensors(obj, _declared_tensors(zf, prefix))


def _is_torchscript(names, prefix):
    """Whether zip entry ``names`` are a TorchScript archive's (compiled code, constants)."""
    return (f'{prefix}constants.pkl' in names
            or any(n.startswith(f'{prefix}code/') for n in names))


def _load_legacy(f, path):
    """torch < 1.6: magic, protocol, sys info, the object, storage keys, then raw storages."""
    if _Unpickler(f).load() != LEGACY_MAGIC:
        raise ValueError(f'{path}: neither a torch checkpoint nor a pickled dict of arrays')
    _Unpickler(f).load()  # protocol version
    _Unpickler(f).load()  # system info (endianness, type sizes)
    types = {}

    def load_storage(storage_type, key):
        types[key] = storage_type
        return key

    def rebuild(key, *args):  # tensors wait until their storage bytes are read
        return _Deferred(key, args)

    tree = _Unpickler(f, load_storage, rebuild).load()
    storages = {}
    for key in _Unpickler(f).load():
        key = str(key)
        (numel,) = struct.unpack('<q', f.read(8))
        dtype = types[key].dtype
        itemsize = 2 if dtype is None else np.dtype(dtype).itemsize
        storages[key] = _Storage(types[key], f.read(numel * itemsize))
    return _resolve(tree, storages)


class _Deferred:
    def __init__(self, key, args):
        self.key, self.args = key, args


def _resolve(value, storages):
    if isinstance(value, _Deferred):
        return _rebuild_tensor(storages[value.key], *value.args)
    if isinstance(value, dict):
        return {k: _resolve(v, storages) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve(v, storages) for v in value)
    return value


def load(path):
    """The object stored in a torch checkpoint or pickled ``.pdparams``, tensors as numpy.

    A TorchScript archive gives its module tree's tensors as nested dicts; instances of classes
    from ``INERT_MODULES`` are ``_Inert`` placeholders.

    Raises FileNotFoundError for a missing file, UnsafeFileError when the file references code,
    ValueError for anything that is not such a checkpoint.
    """
    path = str(path)
    with open(path, 'rb') as f:
        head = f.read(4)
        f.seek(0)
        if head[:2] == b'PK':
            return _load_zip(path)
        try:
            obj = _Unpickler(f).load()
        except UnsafeFileError:
            raise
        except Exception as e:
            raise ValueError(f'{path}: not a readable torch/paddle checkpoint ({e})') from None
        if obj == LEGACY_MAGIC:
            f.seek(0)
            return _load_legacy(f, path)
        return obj

