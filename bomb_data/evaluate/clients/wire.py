"""Wire formats of the policy servers, written from their specifications (no third-party copies).

- openpi: msgpack where numpy arrays are maps ``{b"__ndarray__": True, b"data": raw bytes,
  b"dtype": dtype.str, b"shape": shape}`` and numpy scalars ``{b"__npgeneric__": True, b"data":
  item, b"dtype": dtype.str}`` (``openpi_client.msgpack_numpy``); object and void dtypes are refused.
- OpenVLA REST: JSON where numpy arrays are objects ``{"__numpy__": base64 of the C-ordered bytes,
  "dtype": numpy descr string, "shape": [...]}`` (the ``json-numpy`` package that OpenVLA's
  ``deploy.py`` patches into ``json``); a shape of ``[]`` is a scalar.

Decoding a foreign message refuses (``ValueError``) an array whose dtype is missing, unknown or
holds Python objects, whose bytes do not fill its shape, or a scalar that is not one item: such
arrays would crash the process or escape as KeyError/IndexError.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import msgpack
import numpy as np


# ------------------------------------------------------------------------------------- msgpack
def _pack_default(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in ("V", "O", "c"):
        raise ValueError(f"msgpack-numpy: unsupported dtype {obj.dtype}")
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": np.ascontiguousarray(obj).tobytes(), b"dtype": obj.dtype.str,
                b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"msgpack-numpy: cannot serialise {type(obj).__name__}")


def _plain_dtype(descr: Any) -> np.dtype:
    """The dtype a foreign message names, if it holds no Python objects.

    An object array made over received bytes would hold the sender's bytes as pointers: reading
    it crashes the process (a segfault, not an exception). Such arrays are refused here.

    Raises:
        ValueError: no dtype, an unknown one, or one holding objects.
    """
    if descr is None:
        raise ValueError("array without a dtype")
    if isinstance(descr, bytes):
        descr = descr.decode("ascii", errors="replace")
    if not isinstance(descr, (str, list)):
        raise ValueError(f"dtype must be a string, got {type(descr).__name__}")
    try:
        dt = np.dtype(descr) if isinstance(descr, str) else np.lib.format.descr_to_dtype(
            [tuple(x) for x in descr])
    except (TypeError, ValueError, SyntaxError) as exc:
        raise ValueError(f"unknown dtype {str(descr)[:40]!r} ({exc})") from None
    if dt.hasobject:
        raise ValueError(f"dtype {dt} holds Python objects, which no server can send")
    return dt


def _unpack_hook(obj: dict[Any, Any]) -> Any:
    if b"__ndarray__" in obj:
        shape = obj.get(b"shape")
        if not isinstance(shape, (list, tuple)) or not all(isinstance(n, int) for n in shape):
            raise ValueError(f"array shape must be a list of integers, got {shape!r}"[:120])
        data = obj.get(b"data")
        if not isinstance(data, bytes):
            raise ValueError("array data must be bytes")
        return np.ndarray(buffer=data, dtype=_plain_dtype(obj.get(b"dtype")), shape=tuple(shape))
    if b"__npgeneric__" in obj:
        return _plain_dtype(obj.get(b"dtype")).type(obj.get(b"data"))
    return obj


def packb(obj: Any) -> bytes:
    """Serialise ``obj`` (dicts, lists, str, numbers, numpy arrays) in openpi's msgpack-numpy format."""
    return msgpack.packb(obj, default=_pack_default)


def unpackb(data: bytes) -> Any:
    """Inverse of ``packb``: numpy arrays come back as read-only arrays over the message buffer."""
    return msgpack.unpackb(data, object_hook=_unpack_hook)


# ------------------------------------------------------------------------------------ json-numpy
def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)):
        arr = np.ascontiguousarray(obj)
        return {"__numpy__": base64.b64encode(arr.tobytes()).decode("ascii"),
                "dtype": np.lib.format.dtype_to_descr(arr.dtype), "shape": list(np.shape(obj))}
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"json-numpy: cannot serialise {type(obj).__name__}")


def _json_hook(d: dict[str, Any]) -> Any:
    if "__numpy__" in d:
        dt = _plain_dtype(d.get("dtype"))
        try:
            raw = base64.b64decode(d["__numpy__"], validate=True)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"array data is not base64 ({exc})") from None
        if len(raw) % dt.itemsize:
            raise ValueError(f"{len(raw)} bytes are not a whole number of {dt} items")
        arr = np.frombuffer(raw, dtype=dt)
        shape = d.get("shape") or []
        if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise ValueError(f"array shape must be a list of integers, got {shape!r}"[:120])
        if not shape:  # a scalar: exactly one item
            if arr.size != 1:
                raise ValueError(f"a scalar holds {arr.size} items")
            return arr[0]
        return arr.reshape(shape)
    return d


def json_dumps(obj: Any) -> str:
    """JSON text with numpy arrays encoded as json-numpy objects."""
    return json.dumps(obj, default=_json_default)


def json_loads(text: str | bytes) -> Any:
    """Parse JSON text, decoding json-numpy objects to numpy arrays and scalars."""
    return json.loads(text, object_hook=_json_hook)
