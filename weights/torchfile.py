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
``weights.read.read_weights`` is the entry point; this module only unpickles.
"""
import io
import pickle
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

    def find_class(self, module, name):
        if module == 'collections' and name == 'OrderedDict':
            return _Dict
        if module == 'builtins' and name == 'tuple':  # paddle.save's (name, array) tensors
            return tuple
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

    def persistent_load(self, pid):
        if self._load_storage is None or not (isinstance(pid, tuple) and pid
                                              and pid[0] == 'storage'):
            raise UnsafeFileError(f'unexpected persistent id {pid!r}')
        storage_type, key = pid[1], str(pid[2])
        if isinstance(storage_type, str):  # some versions store the type's name
            storage_type = _StorageType(storage_type)
        return self._load_storage(storage_type, key)


def _load_zip(path):
    with zipfile.ZipFile(path) as zf:
        pkl = next((n for n in zf.namelist() if n.endswith('data.pkl')), None)
        if pkl is None:
            raise ValueError(f'{path}: a zip file without data.pkl is not a torch checkpoint')
        prefix, cache = pkl[:-len('data.pkl')], {}

        def load_storage(storage_type, key):
            if key not in cache:
                cache[key] = _Storage(storage_type, zf.read(f'{prefix}data/{key}'))
            return cache[key]

        return _Unpickler(io.BytesIO(zf.read(pkl)), load_storage).load()


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

