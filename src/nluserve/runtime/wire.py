"""The inference process's message format: a JSON header, then the arrays' raw bytes.

Not pickle: a message is data, never code, so a peer that got past the socket's
authentication still cannot make the other side run anything. Only numeric arrays cross.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

_KINDS = "biuf"  # bool, signed and unsigned integers, floats


class WireError(ValueError):
    """A message that does not follow the format."""


def pack(header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> bytes:
    """One message: 4-byte header length, the JSON header, the arrays' bytes in order."""
    arrays = arrays or {}
    specs = []
    for name, array in arrays.items():
        if array.dtype.kind not in _KINDS:
            raise WireError(f"array {name!r} has a non-numeric dtype {array.dtype}")
        specs.append([name, array.dtype.str, list(array.shape)])
    head = json.dumps({**header, "arrays": specs}).encode()
    body = [np.ascontiguousarray(a).tobytes() for a in arrays.values()]
    return b"".join([len(head).to_bytes(4, "big"), head, *body])


def unpack(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and the arrays of one message (the arrays are read-only views of ``data``)."""
    try:
        size = int.from_bytes(data[:4], "big")
        header = json.loads(data[4 : 4 + size])
        specs = header.pop("arrays")
        offset = 4 + size
        arrays: dict[str, np.ndarray] = {}
        for name, dtype_str, shape in specs:
            dtype = np.dtype(dtype_str)
            if dtype.kind not in _KINDS:
                raise WireError(f"array {name!r} has a non-numeric dtype {dtype}")
            count = math.prod(shape)
            arrays[name] = np.frombuffer(data, dtype, count, offset).reshape(shape)
            offset += count * dtype.itemsize
    except WireError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise WireError(f"malformed message: {exc}") from exc
    if offset != len(data):
        raise WireError(f"message has {len(data) - offset} bytes beyond its arrays")
    return header, arrays


def join_batches(batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Several batches' arrays in one message: ``"<batch>.<name>"``."""
    return {
        f"{k}.{name}": array for k, feeds in enumerate(batches) for name, array in feeds.items()
    }


def split_batches(arrays: dict[str, np.ndarray], count: object) -> list[dict[str, np.ndarray]]:
    """The batches ``join_batches`` put in one message."""
    if not isinstance(count, int) or not 0 < count <= 4096:
        raise WireError(f"bad batch count {count!r}")
    batches: list[dict[str, np.ndarray]] = [{} for _ in range(count)]
    for key, array in arrays.items():
        index, _, name = key.partition(".")
        if not index.isdigit() or int(index) >= count or not name:
            raise WireError(f"array {key!r} names no batch of {count}")
        batches[int(index)][name] = array
    if any(not feeds for feeds in batches):
        raise WireError("a batch without arrays")
    return batches
