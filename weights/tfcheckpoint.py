"""Reads TensorFlow checkpoints (the V2 "tensor bundle" format) as numpy, without TensorFlow.

The official DeepFill releases are TF1 checkpoints: ``snap-0.index`` (a LevelDB-style sorted
table mapping each variable name to a small protobuf: dtype, shape, shard, offset, size) and
``snap-0.data-00000-of-00001`` (the raw little-endian tensor bytes). Both are parsed here, so
converting the official weights needs neither TensorFlow nor its 1.x API.

Only what the bundle writer produces is supported: uncompressed table blocks, little-endian data,
unsliced numeric tensors. String tensors (none in model checkpoints) are skipped.
"""
import struct
from pathlib import Path

import numpy as np

TABLE_MAGIC = 0xdb4775248b80fb57
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8,
          9: np.int64, 10: np.bool_, 17: np.uint16, 19: np.float16, 22: np.uint32, 23: np.uint64}
DT_STRING, DT_BFLOAT16 = 7, 14


def _varint(buf, pos):
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7f) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf):
    """(field number, value) pairs of a protobuf message; bytes for length-delimited fields."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f'unsupported protobuf wire type {wire}')
        yield field, value


def _block_entries(table, offset, size, path):
    """(key, value) pairs of one table block (prefix-compressed keys, restart array at the end)."""
    if table[offset + size] != 0:
        raise ValueError(f'{path}: compressed index blocks are not supported')
    block = table[offset:offset + size]
    (restarts,) = struct.unpack_from('<I', block, len(block) - 4)
    end, pos, key = len(block) - 4 * (restarts + 1), 0, b''
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        yield key, block[pos:pos + length]
        pos += length


def _handle(buf, pos=0):
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def _entry(value):
    """BundleEntryProto -> (dtype, shape, shard, offset, size)."""
    info = dict(dtype=1, shape=[], shard=0, offset=0, size=0)
    for field, data in _fields(value):
        if field == 1:
            info['dtype'] = data
        elif field == 2:
            info['shape'] = [next((v for f, v in _fields(dim) if f == 1), 0)
                             for f, dim in _fields(data) if f == 2]
        elif field in (3, 4, 5):
            info[{3: 'shard', 4: 'offset', 5: 'size'}[field]] = data
        elif field == 7:
            raise ValueError('sliced (partitioned) variables are not supported')
    return info


def resolve_prefix(path):
    """The checkpoint prefix (``.../snap-0``) for a prefix, its ``.index`` file or a folder."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob('*.index'))
        if len(found) != 1:
            raise ValueError(f'--input: {path} holds {len(found)} TensorFlow checkpoints '
                             '(*.index); name one, e.g. DIR/snap-0')
        path = found[0]
    if path.suffix == '.index':
        path = path.with_suffix('')
    elif '.data-' in path.name:
        path = path.with_name(path.name.split('.data-')[0])
    if not Path(f'{path}.index').is_file():
        raise FileNotFoundError(f'--input: {path}.index does not exist')
    return path


def is_checkpoint(path):
    """Whether ``path`` names a TF checkpoint (prefix, .index, .data-* file or its folder)."""
    path = Path(path)
    return (path.is_dir() and any(path.glob('*.index'))) or path.suffix == '.index' \
        or '.data-' in path.name or Path(f'{path}.index').is_file()


def read(path):
    """{variable name: numpy array} of a TensorFlow V2 checkpoint (see ``resolve_prefix``)."""
    prefix = resolve_prefix(path)
    table = Path(f'{prefix}.index').read_bytes()
    if len(table) < 48 or struct.unpack_from('<Q', table, len(table) - 8)[0] != TABLE_MAGIC:
        raise ValueError(f'--input: {prefix}.index is not a TensorFlow checkpoint index')
    _, _, pos = _handle(table, len(table) - 48)  # the metaindex handle (unused)
    index_offset, index_size, _ = _handle(table, pos)
    entries = {}
    for _, handle in _block_entries(table, index_offset, index_size, prefix):
        offset, size, _ = _handle(handle)
        entries.update(_block_entries(table, offset, size, prefix))
    header = dict(_fields(entries.pop(b'', b'')))
    if header.get(2, 0) != 0:
        raise ValueError(f'--input: {prefix} is a big-endian checkpoint')
    shards = {}
    tensors = {}
    for key, value in entries.items():
        info = _entry(value)
        if info['dtype'] == DT_STRING:
            continue
        name = key.decode()
        if info['shard'] not in shards:
            data = Path(f"{prefix}.data-{info['shard']:05d}-of-{header.get(1, 1):05d}")
            if not data.is_file():
                raise FileNotFoundError(f'--input: {data} does not exist (the checkpoint data)')
            shards[info['shard']] = data.read_bytes()
        raw = shards[info['shard']][info['offset']:info['offset'] + info['size']]
        if info['dtype'] == DT_BFLOAT16:
            array = (np.frombuffer(raw, '<u2').astype(np.uint32) << 16).view(np.float32)
        elif info['dtype'] in DTYPES:
            array = np.frombuffer(raw, np.dtype(DTYPES[info['dtype']]).newbyteorder('<'))
        else:
            raise ValueError(f"--input: {name} has unsupported TensorFlow dtype {info['dtype']}")
        tensors[name] = array.reshape(info['shape']).astype(array.dtype.newbyteorder('='))
    return tensors
