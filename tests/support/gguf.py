"""Make a GGUF with another chat template: the shipped model's weights, new metadata.

`with_chat_template(source, target, template)` copies `source` and sets (or adds)
`tokenizer.chat_template`. It reads the GGUF v2/v3 header (key-value metadata, tensor
infos), writes it back with the new template, pads to the file's alignment and copies
the tensor data unchanged: tensor offsets are relative to the data section, so they
stay valid. Enough of the format for tests, not a general GGUF editor.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path
from typing import BinaryIO

__all__ = ["GEMMA_TEMPLATE", "with_chat_template"]

# Gemma's turn markers (its template shape, without Gemma's special tokens).
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<start_of_turn>{{ 'model' if message['role'] == 'assistant' else 'user' }}\n"
    "{{ message['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

_KEY = "tokenizer.chat_template"
_STRING, _ARRAY, _UINT32 = 8, 9, 4
_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def with_chat_template(source: Path, target: Path, template: str) -> Path:
    with source.open("rb") as src:
        magic, version, n_tensors, n_kv = struct.unpack("<4sIQQ", src.read(24))
        assert magic == b"GGUF" and version >= 2
        kvs: list[bytes] = []
        alignment = 32
        for _ in range(n_kv):
            start = src.tell()
            key = _string(src)
            kind = _u32(src)
            value_start = src.tell()
            _skip(src, kind)
            if key == "general.alignment":
                src.seek(value_start)
                alignment = _u32(src)
            end = src.tell()
            src.seek(start)
            raw = src.read(end - start)
            if key != _KEY:
                kvs.append(raw)
        kvs.append(_encode(_KEY) + struct.pack("<I", _STRING) + _encode(template))
        infos_start = src.tell()
        for _ in range(n_tensors):
            _string(src)
            n_dims = _u32(src)
            src.seek(8 * n_dims + 4 + 8, 1)
        infos = _read_at(src, infos_start, src.tell() - infos_start)
        data_start = -(-src.tell() // alignment) * alignment
        with target.open("wb") as out:
            out.write(struct.pack("<4sIQQ", magic, version, n_tensors, len(kvs)))
            out.write(b"".join(kvs) + infos)
            out.write(b"\0" * (-out.tell() % alignment))
            src.seek(data_start)
            shutil.copyfileobj(src, out, 1 << 20)
    return target


def _u32(f: BinaryIO) -> int:
    return int(struct.unpack("<I", f.read(4))[0])


def _string(f: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", f.read(8))
    return f.read(length).decode("utf-8", "replace")


def _skip(f: BinaryIO, kind: int) -> None:
    if kind == _STRING:
        (length,) = struct.unpack("<Q", f.read(8))
        f.seek(length, 1)
    elif kind == _ARRAY:
        item = _u32(f)
        (count,) = struct.unpack("<Q", f.read(8))
        if item in _SIZES:
            f.seek(_SIZES[item] * count, 1)
        else:
            for _ in range(count):
                _skip(f, item)
    else:
        f.seek(_SIZES[kind], 1)


def _encode(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _read_at(f: BinaryIO, offset: int, size: int) -> bytes:
    here = f.tell()
    f.seek(offset)
    data = f.read(size)
    f.seek(here)
    return data
