"""Paddle set-up shared by every entry point: CPU math path, threads, quiet logs, device.

Importing this module sets two environment defaults that Paddle only reads when it is first
imported:

- ``MKL_DEBUG_CPU_TYPE=5``: Paddle's bundled MKL takes a slow generic code path on AMD CPUs;
  this switch makes a DeepFill-sized training step about 8x faster there and is harmless on Intel.
- ``GLOG_minloglevel=2``: hides the C++ INFO/WARNING chatter of the executor and jit.save.

``models/__init__.py`` imports this module before any model file imports paddle, so importing
``models`` (or any entry point) applies them. Values already set in the environment are kept.
"""
import os
import sys
import warnings
import zlib

_PADDLE_WAS_LOADED = 'paddle' in sys.modules
# `import paddle` sets OMP_NUM_THREADS=1 when it is unset, so remember what the user asked for.
_USER_THREADS = os.environ.get('OMP_NUM_THREADS')
os.environ.setdefault('MKL_DEBUG_CPU_TYPE', '5')
os.environ.setdefault('GLOG_minloglevel', '2')
# `import paddle` warns about a missing ccache on every start; it concerns C++ extension builds.
warnings.filterwarnings('ignore', message='No ccache found')

# Paddle 2.6's libpaddle.so exports a zlib of its own: a libz function first called after it is
# loaded binds to that copy and crashes (importing numpy.random decompresses, so does reading a
# PNG). One round trip through zlib now binds libz to itself first.
if not _PADDLE_WAS_LOADED:
    zlib.decompress(zlib.compress(b'deepfill'))

import paddle  # noqa: E402  (must follow the environment defaults above)


def _is_amd_cpu():
    try:
        with open('/proc/cpuinfo') as f:
            return 'AuthenticAMD' in f.read(4096)
    except OSError:
        return False


def setup(device='auto', threads=None):
    """Selects the device and the CPU thread count; returns the device actually used.

    Args:
        device: 'auto' (GPU when Paddle was built with CUDA and sees one), 'gpu', 'gpu:N' or 'cpu'.
        threads: CPU math threads; default all cores. Paddle pins itself to one thread unless told.
    Raises:
        ValueError: on an unknown device name or a GPU request that this Paddle cannot serve.
    """
    if _PADDLE_WAS_LOADED and _is_amd_cpu() and os.environ.get('MKL_DEBUG_CPU_TYPE') != '5':
        warnings.warn('paddle was imported before runtime.py; set MKL_DEBUG_CPU_TYPE=5 before '
                      '`import paddle` or CPU training runs several times slower on AMD CPUs')
    has_gpu = paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if device == 'auto':
        device = 'gpu' if has_gpu else 'cpu'
    if device.startswith('gpu') and not has_gpu:
        raise ValueError(f"device: '{device}' requested but this paddle has no usable GPU "
                         "(install paddlepaddle-gpu, or pass --device cpu)")
    if device != 'cpu' and not device.startswith('gpu'):
        raise ValueError(f"device: expected 'auto', 'cpu', 'gpu' or 'gpu:N', got '{device}'")
    paddle.set_device(device)
    if threads is None:
        threads = int(_USER_THREADS or 0) or os.cpu_count() or 1
    paddle.base.core.set_num_threads(int(threads))
    return device


def run_cli(main):
    """Runs an entry point; expected user errors print one line and exit 2 (NaN stops exit 1).

    Set DEEPFILL_DEBUG=1 to get the full traceback instead. User errors are ValueError and its
    subclasses (bad flags, unreadable checkpoints, unsafe files) and FileNotFoundError.
    """
    try:
        return main()
    except FloatingPointError as e:
        if os.environ.get('DEEPFILL_DEBUG'):
            raise
        print(f'error: {e}', file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as e:
        if os.environ.get('DEEPFILL_DEBUG'):
            raise
        print(f'error: {e}', file=sys.stderr)
        return 2
