//! Just enough of a BTF reader (`/sys/kernel/btf/vmlinux`) to find struct member offsets and
//! tracepoint prototypes in the running kernel. Format: Documentation/bpf/btf.rst.
use anyhow::{Context as _, Result, anyhow, bail};

const MAGIC: u16 = 0xeb9f;
/// How deep anonymous members and arrays of arrays may nest (the kernel's go a few levels).
const MAX_NESTING: u32 = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int,
    Ptr,
    Array,
    Struct,
    Union,
    Enum,
    Fwd,
    Typedef,
    Volatile,
    Const,
    Restrict,
    Func,
    FuncProto,
    Var,
    Datasec,
    Float,
    DeclTag,
    TypeTag,
    Enum64,
}

impl Kind {
    fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            1 => Self::Int,
            2 => Self::Ptr,
            3 => Self::Array,
            4 => Self::Struct,
            5 => Self::Union,
            6 => Self::Enum,
            7 => Self::Fwd,
            8 => Self::Typedef,
            9 => Self::Volatile,
            10 => Self::Const,
            11 => Self::Restrict,
            12 => Self::Func,
            13 => Self::FuncProto,
            14 => Self::Var,
            15 => Self::Datasec,
            16 => Self::Float,
            17 => Self::DeclTag,
            18 => Self::TypeTag,
            19 => Self::Enum64,
            _ => return None,
        })
    }
}

/// A struct/union member or a function parameter (bit_offset 0).
#[derive(Clone, Copy, Debug)]
pub struct Member<'a> {
    pub name: &'a str,
    pub type_id: u32,
    pub bit_offset: u32,
    /// Non-zero for bitfields.
    pub bitfield_size: u32,
}

/// One type record, its names and members read from the BTF data when asked for.
#[derive(Clone, Copy, Debug)]
struct Rec {
    kind: Kind,
    name_off: u32,
    size_or_type: u32,
    vlen: u16,
    kind_flag: bool,
    /// Offset of the kind-specific data that follows the record.
    body: u32,
}

/// A view of one type.
#[derive(Clone, Copy)]
pub struct Type<'a> {
    btf: &'a Btf,
    rec: Rec,
    pub kind: Kind,
    /// Size in bytes (int, struct, union, enum) or referenced type id (ptr, typedef, ...).
    pub size_or_type: u32,
}

impl<'a> Type<'a> {
    pub fn name(&self) -> &'a str {
        self.btf.string(self.rec.name_off)
    }

    /// Struct/union members, or function-prototype parameters.
    pub fn members(&self) -> impl Iterator<Item = Member<'a>> + 'a {
        let (btf, rec) = (self.btf, self.rec);
        let stride = match rec.kind {
            Kind::Struct | Kind::Union => 12,
            Kind::FuncProto => 8,
            _ => 0,
        };
        let n = if stride == 0 { 0 } else { usize::from(rec.vlen) };
        (0..n).filter_map(move |i| {
            let at = rec.body as usize + i * stride;
            let name = btf.string(u32_at(&btf.data, at).ok()?);
            let type_id = u32_at(&btf.data, at + 4).ok()?;
            let (bitfield_size, bit_offset) = if stride == 12 {
                let off = u32_at(&btf.data, at + 8).ok()?;
                if rec.kind_flag { (off >> 24, off & 0xff_ffff) } else { (0, off) }
            } else {
                (0, 0)
            };
            Some(Member { name, type_id, bit_offset, bitfield_size })
        })
    }
}

/// Kernel BTF, kept as its raw bytes plus one small record per type: the vmlinux BTF of a
/// distribution kernel has over 100,000 types, and owning a string per type and member cost
/// tens of megabytes at start.
pub struct Btf {
    data: Vec<u8>,
    strings: (usize, usize),
    types: Vec<Rec>, // index = type id; 0 is void
}

fn u16_at(b: &[u8], off: usize) -> Result<u16> {
    let s = b.get(off..off + 2).ok_or_else(|| anyhow!("BTF truncated at {off}"))?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> Result<u32> {
    let s = b.get(off..off + 4).ok_or_else(|| anyhow!("BTF truncated at {off}"))?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

impl Btf {
    pub fn from_sys_fs() -> Result<Self> {
        let path = "/sys/kernel/btf/vmlinux";
        let data =
            crate::kernel_file::read(std::path::Path::new(path), crate::kernel_file::MAX_BTF)
                .with_context(|| format!("reading {path}"))?;
        Self::parse_owned(data)
    }

    pub fn parse(data: &[u8]) -> Result<Self> {
        Self::parse_owned(data.to_vec())
    }

    fn parse_owned(data: Vec<u8>) -> Result<Self> {
        if u16_at(&data, 0)? != MAGIC {
            bail!("not BTF (bad magic)");
        }
        let hdr_len = u32_at(&data, 4)? as usize;
        let type_off = hdr_len + u32_at(&data, 8)? as usize;
        let type_len = u32_at(&data, 12)? as usize;
        let str_off = hdr_len + u32_at(&data, 16)? as usize;
        let str_len = u32_at(&data, 20)? as usize;
        if data.len() < str_off + str_len || data.len() < type_off + type_len {
            bail!("BTF sections out of range");
        }
        let mut types = vec![Rec {
            kind: Kind::Int,
            name_off: 0,
            size_or_type: 0,
            vlen: 0,
            kind_flag: false,
            body: 0,
        }];
        let mut pos = type_off;
        let end = type_off + type_len;
        while pos < end {
            let name_off = u32_at(&data, pos)?;
            let info = u32_at(&data, pos + 4)?;
            let size_or_type = u32_at(&data, pos + 8)?;
            pos += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = Kind::from_raw((info >> 24) & 0x1f)
                .ok_or_else(|| anyhow!("unknown BTF kind {}", (info >> 24) & 0x1f))?;
            let body = pos as u32;
            pos += match kind {
                Kind::Int | Kind::Var | Kind::DeclTag => 4,
                Kind::Array => 12,
                Kind::Struct | Kind::Union | Kind::Datasec | Kind::Enum64 => 12 * vlen,
                Kind::Enum | Kind::FuncProto => 8 * vlen,
                _ => 0,
            };
            types.push(Rec {
                kind,
                name_off,
                size_or_type,
                vlen: vlen as u16,
                kind_flag: info >> 31 == 1,
                body,
            });
        }
        if pos != end {
            bail!("BTF type section overruns its length");
        }
        Ok(Self { data, strings: (str_off, str_len), types })
    }

    fn string(&self, off: u32) -> &str {
        let (start, len) = self.strings;
        let s =
            self.data.get(start..start + len).and_then(|s| s.get(off as usize..)).unwrap_or(&[]);
        let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or("")
    }

    pub fn get(&self, id: u32) -> Option<Type<'_>> {
        let rec = *self.types.get(id as usize)?;
        Some(Type { btf: self, rec, kind: rec.kind, size_or_type: rec.size_or_type })
    }

    /// The first type named `name` of `kind` (a linear scan: tcperr asks a few dozen times).
    pub fn find(&self, name: &str, kind: Kind) -> Option<u32> {
        self.types
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, r)| r.kind == kind && self.string(r.name_off) == name)
            .map(|(id, _)| id as u32)
    }

    /// Follows typedefs and qualifiers to the type they name.
    pub fn resolve(&self, mut id: u32) -> Option<(u32, Type<'_>)> {
        for _ in 0..32 {
            let t = self.get(id)?;
            match t.kind {
                Kind::Typedef | Kind::Volatile | Kind::Const | Kind::Restrict | Kind::TypeTag => {
                    id = t.size_or_type
                }
                _ => return Some((id, t)),
            }
        }
        None
    }

    /// Byte offset and member type of `path` (dot-separated, e.g. `__sk_common.skc_state`)
    /// inside struct `ty`, descending into anonymous members as C does.
    pub fn member_offset(&self, ty: &str, path: &str) -> Result<(u32, u32)> {
        let mut id =
            self.find(ty, Kind::Struct).ok_or_else(|| anyhow!("struct {ty} not in kernel BTF"))?;
        let mut total = 0u32;
        let mut member_type = 0;
        for part in path.split('.') {
            let (bits, tid, bitfield) = self
                .find_member(id, part, 0)
                .ok_or_else(|| anyhow!("{ty}.{path}: no member {part} in kernel BTF"))?;
            if bitfield || bits % 8 != 0 {
                bail!("{ty}.{path} is a bitfield");
            }
            total = total
                .checked_add(bits / 8)
                .ok_or_else(|| anyhow!("{ty}.{path}: offset overflows"))?;
            member_type = tid;
            id = tid;
        }
        Ok((total, member_type))
    }

    /// Byte offset and mask of the one-bit bitfield `name` of struct `ty` (little-endian bit
    /// numbering, as BTF gives bit offsets).
    pub fn bit_member(&self, ty: &str, name: &str) -> Result<(u32, u8)> {
        let id =
            self.find(ty, Kind::Struct).ok_or_else(|| anyhow!("struct {ty} not in kernel BTF"))?;
        let (bits, _, bitfield) = self
            .find_member(id, name, 0)
            .ok_or_else(|| anyhow!("{ty}.{name} not in kernel BTF"))?;
        if !bitfield {
            bail!("{ty}.{name} is not a bitfield");
        }
        Ok((bits / 8, 1 << (bits % 8)))
    }

    /// Byte size of a type (following typedefs; pointers are 8 bytes).
    pub fn size_of(&self, id: u32) -> Option<u32> {
        self.size_at(id, 0)
    }

    /// [`Self::size_of`] at `depth` arrays deep (an array of itself is None, not a stack
    /// overflow).
    fn size_at(&self, id: u32, depth: u32) -> Option<u32> {
        if depth > MAX_NESTING {
            return None;
        }
        let (_, t) = self.resolve(id)?;
        match t.kind {
            Kind::Int | Kind::Struct | Kind::Union | Kind::Enum | Kind::Enum64 | Kind::Float => {
                Some(t.size_or_type)
            }
            Kind::Ptr => Some(8),
            Kind::Array => {
                // struct btf_array { type, index_type, nelems }
                let body = t.rec.body as usize;
                let (elem, n) =
                    (u32_at(&self.data, body).ok()?, u32_at(&self.data, body + 8).ok()?);
                self.size_at(elem, depth + 1)?.checked_mul(n)
            }
            _ => None,
        }
    }

    /// (bit offset, type id, is a bitfield) of member `name`, searching anonymous members (at
    /// `depth`: a struct that contains itself ends the search, not the stack).
    fn find_member(&self, struct_id: u32, name: &str, depth: u32) -> Option<(u32, u32, bool)> {
        if depth > MAX_NESTING {
            return None;
        }
        let (_, t) = self.resolve(struct_id)?;
        if !matches!(t.kind, Kind::Struct | Kind::Union) {
            return None;
        }
        for m in t.members() {
            if m.name == name {
                return Some((m.bit_offset, m.type_id, m.bitfield_size != 0));
            }
            if m.name.is_empty()
                && let Some((bits, tid, bitfield)) = self.find_member(m.type_id, name, depth + 1)
            {
                return Some((m.bit_offset.checked_add(bits)?, tid, bitfield));
            }
        }
        None
    }

    /// Parameters of the raw tracepoint `name`'s prototype (`btf_trace_<name>`, whose first
    /// parameter is the tracepoint's private data and is dropped here), as resolved types.
    pub fn tracepoint_params(&self, name: &str) -> Result<Vec<Type<'_>>> {
        let td = self
            .find(&format!("btf_trace_{name}"), Kind::Typedef)
            .ok_or_else(|| anyhow!("btf_trace_{name} not in kernel BTF"))?;
        let (_, ptr) = self.resolve(td).ok_or_else(|| anyhow!("btf_trace_{name} unresolved"))?;
        let (_, proto) = self
            .resolve(ptr.size_or_type)
            .filter(|(_, t)| ptr.kind == Kind::Ptr && t.kind == Kind::FuncProto)
            .ok_or_else(|| anyhow!("btf_trace_{name} is not a function pointer"))?;
        proto
            .members()
            .skip(1)
            .map(|p| {
                self.resolve(p.type_id)
                    .map(|(_, t)| t)
                    .ok_or_else(|| anyhow!("btf_trace_{name}: unresolved parameter"))
            })
            .collect()
    }

    /// Parameter names of kernel function `name` (a BTF FUNC), or None if BTF has no such
    /// function (inlined, static and renamed, or absent).
    pub fn func_params(&self, name: &str) -> Option<Vec<String>> {
        let f = self.get(self.find(name, Kind::Func)?)?;
        let (_, proto) = self.resolve(f.size_or_type)?;
        (proto.kind == Kind::FuncProto)
            .then(|| proto.members().map(|m| m.name.to_owned()).collect())
    }

    /// The names and values of `enum <name>` (32-bit enums; values as the kernel's unsigned
    /// fields hold them), or None if BTF has no such enum.
    pub fn enum_values(&self, name: &str) -> Option<Vec<(u64, &str)>> {
        let t = self.get(self.find(name, Kind::Enum)?)?;
        // struct btf_enum { name_off, val }
        (0..usize::from(t.rec.vlen))
            .map(|i| {
                let at = t.rec.body as usize + i * 8;
                let name = self.string(u32_at(&self.data, at).ok()?);
                Some((u64::from(u32_at(&self.data, at + 4).ok()?), name))
            })
            .collect()
    }

    /// Whether a resolved type is a pointer to `struct <name>` (through qualifiers).
    pub fn is_ptr_to_struct(&self, t: &Type<'_>, name: &str) -> bool {
        t.kind == Kind::Ptr
            && self
                .resolve(t.size_or_type)
                .is_some_and(|(_, s)| s.kind == Kind::Struct && s.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob: `struct outer { int a; union { struct inner { short x; char y; } i; }; }`
    /// and `struct task { char comm[16]; }` and `enum colour { RED, BLUE = 7 }`.
    fn blob() -> Vec<u8> {
        let strings =
            b"\0int\0outer\0a\0inner\0x\0y\0i\0short\0char\0task\0comm\0colour\0RED\0BLUE\0"
                .to_vec();
        let s = |name: &str| -> u32 {
            let pat = format!("\0{name}\0");
            strings.windows(pat.len()).position(|w| w == pat.as_bytes()).unwrap() as u32 + 1
        };
        let mut t = Vec::new();
        let mut push =
            |words: &[u32]| words.iter().for_each(|w| t.extend_from_slice(&w.to_le_bytes()));
        push(&[s("int"), 1 << 24, 4, (1 << 24) | 32]); // 1: int
        push(&[s("short"), 1 << 24, 2, (1 << 24) | 16]); // 2: short
        push(&[s("char"), 1 << 24, 1, 8]); // 3: char
        push(&[s("inner"), (4 << 24) | 2, 4, s("x"), 2, 0, s("y"), 3, 16]); // 4: struct inner
        push(&[0, (5 << 24) | 1, 4, s("i"), 4, 0]); // 5: anonymous union
        push(&[s("outer"), (4 << 24) | 2, 8, s("a"), 1, 0, 0, 5, 32]); // 6: struct outer
        push(&[0, 3 << 24, 0, 3, 1, 16]); // 7: char[16]
        push(&[s("task"), (4 << 24) | 1, 16, s("comm"), 7, 0]); // 8: struct task
        push(&[s("colour"), (6 << 24) | 2, 4, s("RED"), 0, s("BLUE"), 7]); // 9: enum colour
        with_header(&t, &strings)
    }

    /// A BTF blob of the type section `types` and the string section `strings`.
    fn with_header(types: &[u8], strings: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [0xeb9f_u16.to_le_bytes(), [1, 0]] {
            b.extend_from_slice(&w);
        }
        for w in [24u32, 0, types.len() as u32, types.len() as u32, strings.len() as u32] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.extend_from_slice(types);
        b.extend_from_slice(strings);
        b
    }

    #[test]
    fn member_offsets_descend_into_anonymous_unions() {
        let btf = Btf::parse(&blob()).unwrap();
        assert_eq!(btf.member_offset("outer", "a").unwrap().0, 0);
        assert_eq!(btf.member_offset("outer", "i.y").unwrap().0, 6);
        assert!(btf.member_offset("outer", "i.z").is_err());
    }

    #[test]
    fn an_array_is_its_element_size_times_its_length() {
        let btf = Btf::parse(&blob()).unwrap();
        let (off, comm) = btf.member_offset("task", "comm").unwrap();
        assert_eq!((off, btf.size_of(comm)), (0, Some(16)));
    }

    #[test]
    fn enum_values_are_read_in_order_with_their_names() {
        let btf = Btf::parse(&blob()).unwrap();
        assert_eq!(btf.enum_values("colour"), Some(vec![(0, "RED"), (7, "BLUE")]));
        assert_eq!(btf.enum_values("task"), None);
    }

    #[test]
    fn a_struct_or_array_that_contains_itself_is_an_error_not_a_stack_overflow() {
        // 1: struct loop { struct loop; } (an anonymous member of its own type), 2: an array of
        // itself.
        let mut t = Vec::new();
        for w in [1u32, (4 << 24) | 1, 4, 0, 1, 0, 0, 3 << 24, 0, 2, 2, 4] {
            t.extend_from_slice(&w.to_le_bytes());
        }
        let btf = Btf::parse(&with_header(&t, b"\0loop\0")).unwrap();
        assert!(btf.member_offset("loop", "x").is_err());
        assert_eq!(btf.size_of(2), None);
    }

    #[test]
    fn rejects_truncated_and_foreign_data() {
        assert!(Btf::parse(&[0x9f, 0xeb]).is_err());
        assert!(Btf::parse(b"\x7fELF............................").is_err());
        let mut b = blob();
        b.truncate(40);
        assert!(Btf::parse(&b).is_err());
    }
}
