"""A small reader of the kernel's BTF (``/sys/kernel/btf/vmlinux``): struct member offsets and enum values.

Struct layouts differ between kernels, and the headers BCC compiles against may come from another version,
so every ``sk_buff`` offset the BPF program uses is read here from the running kernel and passed in as a define.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")

_MAGIC = 0xEB9F
_KIND_VOID = 0  # type id 0: void, which BTF does not encode
_KIND_INT, _KIND_PTR, _KIND_ARRAY, _KIND_STRUCT, _KIND_UNION, _KIND_ENUM = 1, 2, 3, 4, 5, 6
_KIND_TYPEDEF, _KIND_VOLATILE, _KIND_CONST, _KIND_RESTRICT = 8, 9, 10, 11
_KIND_FUNC_PROTO, _KIND_VAR, _KIND_DATASEC, _KIND_DECL_TAG, _KIND_TYPE_TAG, _KIND_ENUM64 = 13, 14, 15, 17, 18, 19
_MODIFIERS = (_KIND_TYPEDEF, _KIND_VOLATILE, _KIND_CONST, _KIND_RESTRICT, _KIND_TYPE_TAG)


class BtfError(RuntimeError):
    """The BTF blob is unreadable, or lacks the type or member asked for."""


@dataclass(frozen=True)
class Member:
    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int


@dataclass(frozen=True)
class BtfType:
    kind: int
    name: str
    size_or_type: int
    members: tuple[Member, ...] = ()
    enumerators: tuple[tuple[str, int], ...] = ()
    array_elem: int = 0
    array_len: int = 0
    params: tuple[int, ...] = ()  # FUNC_PROTO parameter type ids


@dataclass(frozen=True)
class Field:
    """Where a member lives in its outermost struct."""

    offset: int
    size: int


class Btf:
    """Parsed BTF types, indexed by id (id 0 is ``void``)."""

    def __init__(self, types: list[BtfType]) -> None:
        self._types = types
        self._by_name: dict[tuple[int, str], int] = {}
        for type_id, t in enumerate(types):
            if t.name:
                self._by_name.setdefault((t.kind, t.name), type_id)

    @classmethod
    def load(cls, path: Path = VMLINUX_BTF) -> Btf:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BtfError(
                f"cannot read kernel BTF at {path}: {exc.strerror}; the kernel must be built with "
                "CONFIG_DEBUG_INFO_BTF=y"
            ) from exc
        return cls.parse(data, source=str(path))

    @classmethod
    def parse(cls, data: bytes, *, source: str = "<bytes>") -> Btf:
        if len(data) < 24:
            raise BtfError(f"{source}: too short to be BTF ({len(data)} bytes)")
        magic = struct.unpack_from("<H", data, 0)[0]
        if magic != _MAGIC:
            raise BtfError(f"{source}: bad BTF magic {magic:#x} (expected {_MAGIC:#x}, little-endian)")
        hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<5I", data, 4)
        types_blob = data[hdr_len + type_off : hdr_len + type_off + type_len]
        strings = data[hdr_len + str_off : hdr_len + str_off + str_len]

        def name_at(off: int) -> str:
            end = strings.index(b"\0", off)
            return strings[off:end].decode()

        types: list[BtfType] = [BtfType(kind=_KIND_VOID, name="void", size_or_type=0)]
        pos = 0
        while pos < len(types_blob):
            name_off, info, size_or_type = struct.unpack_from("<3I", types_blob, pos)
            pos += 12
            vlen = info & 0xFFFF
            kind = (info >> 24) & 0x1F
            kind_flag = info >> 31
            name = name_at(name_off)
            if kind in (_KIND_STRUCT, _KIND_UNION):
                members = []
                for _ in range(vlen):
                    m_name, m_type, m_off = struct.unpack_from("<3I", types_blob, pos)
                    pos += 12
                    if kind_flag:
                        bit_offset, bitfield = m_off & 0xFFFFFF, m_off >> 24
                    else:
                        bit_offset, bitfield = m_off, 0
                    members.append(Member(name_at(m_name), m_type, bit_offset, bitfield))
                types.append(BtfType(kind, name, size_or_type, members=tuple(members)))
            elif kind == _KIND_ENUM:
                values = []
                for _ in range(vlen):
                    e_name, e_val = struct.unpack_from("<Ii", types_blob, pos)
                    pos += 8
                    values.append((name_at(e_name), e_val))
                types.append(BtfType(kind, name, size_or_type, enumerators=tuple(values)))
            elif kind == _KIND_ENUM64:
                values = []
                for _ in range(vlen):
                    e_name, lo, hi = struct.unpack_from("<3I", types_blob, pos)
                    pos += 12
                    values.append((name_at(e_name), (hi << 32) | lo))
                types.append(BtfType(kind, name, size_or_type, enumerators=tuple(values)))
            elif kind == _KIND_FUNC_PROTO:
                params = []
                for _ in range(vlen):
                    _p_name, p_type = struct.unpack_from("<2I", types_blob, pos)
                    pos += 8
                    params.append(p_type)
                types.append(BtfType(kind, name, size_or_type, params=tuple(params)))
            elif kind == _KIND_ARRAY:
                elem, _index, nelems = struct.unpack_from("<3I", types_blob, pos)
                pos += 12
                types.append(BtfType(kind, name, size_or_type, array_elem=elem, array_len=nelems))
            else:
                pos += _trailing_size(kind, vlen, source)
                types.append(BtfType(kind, name, size_or_type))
        return cls(types)

    def type_size(self, type_id: int) -> int:
        t = self._types[type_id]
        while t.kind in _MODIFIERS:
            t = self._types[t.size_or_type]
        if t.kind == _KIND_PTR:
            return 8
        if t.kind == _KIND_ARRAY:
            return self.type_size(t.array_elem) * t.array_len
        return t.size_or_type

    def struct_member(self, struct_name: str, member: str) -> Field:
        """Byte offset and size of ``member`` in ``struct struct_name``, looking through anonymous members."""
        type_id = self._by_name.get((_KIND_STRUCT, struct_name))
        if type_id is None:
            raise BtfError(f"kernel BTF has no struct {struct_name}")
        found = self._find(type_id, member, 0)
        if found is None:
            raise BtfError(f"kernel BTF: struct {struct_name} has no member {member!r}")
        return found

    def _find(self, type_id: int, member: str, base_bits: int) -> Field | None:
        t = self._types[type_id]
        for m in t.members:
            bits = base_bits + m.bit_offset
            if m.name == member:
                if m.bitfield_size or bits % 8:
                    raise BtfError(f"member {member!r} is a bitfield; it cannot be read by offset")
                return Field(offset=bits // 8, size=self.type_size(m.type_id))
            if not m.name:
                inner = self._resolve(m.type_id)
                if self._types[inner].kind in (_KIND_STRUCT, _KIND_UNION):
                    found = self._find(inner, member, bits)
                    if found is not None:
                        return found
        return None

    def _resolve(self, type_id: int) -> int:
        while self._types[type_id].kind in _MODIFIERS:
            type_id = self._types[type_id].size_or_type
        return type_id

    def tracepoint_params(self, tracepoint: str) -> list[tuple[int, str]]:
        """(kind, name) of each argument a raw tracepoint passes, from the ``btf_trace_<name>`` typedef.

        The kernel's typedef has a leading ``void *__data`` the BPF program does not see; it is dropped here.
        Pointer arguments report the kind and name of what they point to.
        """
        type_id = self.tracepoint_type_id(tracepoint)
        proto = self._types[self._resolve(self._types[self._resolve(type_id)].size_or_type)]
        if proto.kind != _KIND_FUNC_PROTO:
            raise BtfError(f"btf_trace_{tracepoint} is not a function pointer")
        result = []
        for param in proto.params[1:]:
            t = self._types[self._resolve(param)]
            if t.kind == _KIND_PTR:
                t = self._types[self._resolve(t.size_or_type)]
            result.append((t.kind, t.name))
        return result

    def tracepoint_type_id(self, tracepoint: str) -> int:
        """The id of the ``btf_trace_<name>`` typedef: a tp_btf program's attach_btf_id."""
        type_id = self._by_name.get((_KIND_TYPEDEF, f"btf_trace_{tracepoint}"))
        if type_id is None:
            raise BtfError(f"kernel BTF has no raw tracepoint type btf_trace_{tracepoint}")
        return type_id

    def enum_value(self, enum_name: str, enumerator: str) -> int:
        for kind in (_KIND_ENUM, _KIND_ENUM64):
            type_id = self._by_name.get((kind, enum_name))
            if type_id is not None:
                for name, value in self._types[type_id].enumerators:
                    if name == enumerator:
                        return value
                raise BtfError(f"kernel BTF: enum {enum_name} has no {enumerator}")
        raise BtfError(f"kernel BTF has no enum {enum_name}")


def _trailing_size(kind: int, vlen: int, source: str) -> int:
    if kind == _KIND_INT or kind == _KIND_VAR or kind == _KIND_DECL_TAG:
        return 4
    if kind == _KIND_DATASEC:
        return 12 * vlen
    if kind in (_KIND_PTR, 7, _KIND_TYPEDEF, _KIND_VOLATILE, _KIND_CONST, _KIND_RESTRICT, 12, 16, _KIND_TYPE_TAG):
        return 0
    raise BtfError(f"{source}: unknown BTF kind {kind}")
