//! A small reader of Arrow IPC data (the stream format `datasets.save_to_disk` writes, and the
//! file format, whose messages are a stream between a magic header and a footer).
//!
//! Only what math datasets hold is decoded: null, boolean, integer, floating-point, UTF-8 string
//! (32- and 64-bit offsets) and list (32- and 64-bit offsets) columns, uncompressed and without
//! dictionaries. Anything else is an error that names the column and its type. The metadata is
//! FlatBuffers, read here directly from the schema of the Arrow format (`Message.fbs`,
//! `Schema.fbs`); every read is bounds-checked.

use std::path::Path;

use super::{DataError, Row, Value};

/// Every row of an Arrow IPC stream or file.
pub(super) fn read_ipc(path: &Path) -> Result<Vec<Row>, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let err = |m: String| DataError::format(path, format!("expected an Arrow IPC stream or file: {m}"));
    let mut pos = if bytes.starts_with(b"ARROW1") { 8 } else { 0 };
    let mut schema: Option<Vec<FieldType>> = None;
    let mut rows = Vec::new();
    while let Some(mut len) = read_u32(&bytes, pos) {
        pos += 4;
        if len == 0xFFFF_FFFF {
            len = read_u32(&bytes, pos).ok_or_else(|| err(format!("truncated message header at byte {pos}")))?;
            pos += 4;
        }
        if len == 0 {
            break;
        }
        let meta_end = pos + len as usize;
        let meta = bytes.get(pos..meta_end).ok_or_else(|| err(format!("truncated message at byte {pos}")))?;
        let message = Fb::root(meta).map_err(&err)?;
        let header_type = message.u8_field(1, 0).map_err(&err)?;
        let body_len = usize::try_from(message.i64_field(3, 0).map_err(&err)?)
            .map_err(|_| err("negative body length".into()))?;
        let body = bytes.get(meta_end..meta_end + body_len).ok_or_else(|| err(format!("truncated body at byte {meta_end}")))?;
        let header = message.table(2).map_err(&err)?.ok_or_else(|| err("message without header".into()))?;
        match header_type {
            1 => schema = Some(read_schema(&header).map_err(&err)?),
            2 => return Err(err("dictionary-encoded columns are not supported".into())),
            3 => {
                let fields = schema.as_ref().ok_or_else(|| err("record batch before the schema".into()))?;
                rows.extend(read_batch(&header, body, fields).map_err(&err)?);
            }
            other => return Err(err(format!("unsupported message type {other}"))),
        }
        pos = meta_end + body_len;
    }
    if schema.is_none() {
        return Err(err("no schema message".into()));
    }
    Ok(rows)
}

fn read_u32(b: &[u8], pos: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(pos..pos + 4)?.try_into().ok()?))
}

fn read_i64(b: &[u8], pos: usize) -> Option<i64> {
    Some(i64::from_le_bytes(b.get(pos..pos + 8)?.try_into().ok()?))
}

/// A FlatBuffers table inside `buf`.
#[derive(Clone, Copy)]
struct Fb<'a> {
    buf: &'a [u8],
    table: usize,
    vtable: usize,
    vtable_len: usize,
}

type FbResult<T> = Result<T, String>;

impl<'a> Fb<'a> {
    fn root(buf: &'a [u8]) -> FbResult<Self> {
        let at = read_u32(buf, 0).ok_or("empty metadata")? as usize;
        Self::at(buf, at)
    }

    fn at(buf: &'a [u8], table: usize) -> FbResult<Self> {
        let soffset = read_u32(buf, table).ok_or("table outside the metadata")? as i32;
        let vtable = usize::try_from(table as i64 - i64::from(soffset)).map_err(|_| "bad vtable offset")?;
        let vtable_len = buf.get(vtable..vtable + 2).ok_or("vtable outside the metadata")?;
        let vtable_len = u16::from_le_bytes([vtable_len[0], vtable_len[1]]) as usize;
        Ok(Self { buf, table, vtable, vtable_len })
    }

    /// The absolute position of field `slot`, if present.
    fn field(&self, slot: usize) -> FbResult<Option<usize>> {
        let entry = 4 + 2 * slot;
        if entry + 2 > self.vtable_len {
            return Ok(None);
        }
        let b = self.buf.get(self.vtable + entry..self.vtable + entry + 2).ok_or("vtable outside the metadata")?;
        let off = u16::from_le_bytes([b[0], b[1]]) as usize;
        Ok((off != 0).then_some(self.table + off))
    }

    fn scalar<const N: usize>(&self, slot: usize) -> FbResult<Option<[u8; N]>> {
        match self.field(slot)? {
            None => Ok(None),
            Some(p) => {
                let b = self.buf.get(p..p + N).ok_or("field outside the metadata")?;
                Ok(Some(b.try_into().map_err(|_| "field outside the metadata")?))
            }
        }
    }

    fn u8_field(&self, slot: usize, default: u8) -> FbResult<u8> {
        Ok(self.scalar::<1>(slot)?.map_or(default, |b| b[0]))
    }

    fn i16_field(&self, slot: usize, default: i16) -> FbResult<i16> {
        Ok(self.scalar::<2>(slot)?.map_or(default, i16::from_le_bytes))
    }

    fn i32_field(&self, slot: usize, default: i32) -> FbResult<i32> {
        Ok(self.scalar::<4>(slot)?.map_or(default, i32::from_le_bytes))
    }

    fn i64_field(&self, slot: usize, default: i64) -> FbResult<i64> {
        Ok(self.scalar::<8>(slot)?.map_or(default, i64::from_le_bytes))
    }

    /// The target of an offset field.
    fn indirect(&self, slot: usize) -> FbResult<Option<usize>> {
        match self.field(slot)? {
            None => Ok(None),
            Some(p) => Ok(Some(p + read_u32(self.buf, p).ok_or("offset outside the metadata")? as usize)),
        }
    }

    fn table(&self, slot: usize) -> FbResult<Option<Fb<'a>>> {
        self.indirect(slot)?.map(|p| Self::at(self.buf, p)).transpose()
    }

    fn string(&self, slot: usize) -> FbResult<String> {
        let Some(p) = self.indirect(slot)? else { return Ok(String::new()) };
        let len = read_u32(self.buf, p).ok_or("string outside the metadata")? as usize;
        let b = self.buf.get(p + 4..p + 4 + len).ok_or("string outside the metadata")?;
        Ok(String::from_utf8_lossy(b).into_owned())
    }

    /// (start, length) of a vector field.
    fn vector(&self, slot: usize) -> FbResult<(usize, usize)> {
        let Some(p) = self.indirect(slot)? else { return Ok((0, 0)) };
        Ok((p + 4, read_u32(self.buf, p).ok_or("vector outside the metadata")? as usize))
    }

    fn tables(&self, slot: usize) -> FbResult<Vec<Fb<'a>>> {
        let (start, len) = self.vector(slot)?;
        (0..len)
            .map(|i| {
                let p = start + 4 * i;
                Self::at(self.buf, p + read_u32(self.buf, p).ok_or("vector outside the metadata")? as usize)
            })
            .collect()
    }

    /// A vector of structs of two i64 (FieldNode, Buffer).
    fn pairs(&self, slot: usize) -> FbResult<Vec<(i64, i64)>> {
        let (start, len) = self.vector(slot)?;
        (0..len)
            .map(|i| {
                let p = start + 16 * i;
                let a = read_i64(self.buf, p).ok_or("vector outside the metadata")?;
                let b = read_i64(self.buf, p + 8).ok_or("vector outside the metadata")?;
                Ok((a, b))
            })
            .collect()
    }
}

/// The column types decoded.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Null,
    Bool,
    Int { bits: i32, signed: bool },
    Float { precision: i16 },
    Utf8 { large: bool },
    List { large: bool },
}

#[derive(Debug, Clone)]
struct FieldType {
    name: String,
    kind: Kind,
    children: Vec<FieldType>,
}

fn read_schema(schema: &Fb<'_>) -> FbResult<Vec<FieldType>> {
    schema.tables(1)?.iter().map(read_field).collect()
}

fn read_field(field: &Fb<'_>) -> FbResult<FieldType> {
    let name = field.string(0)?;
    if field.field(4)?.is_some() {
        return Err(format!("column `{name}`: dictionary-encoded columns are not supported"));
    }
    let type_id = field.u8_field(2, 0)?;
    let kind = match type_id {
        1 => Kind::Null,
        2 => {
            let t = field.table(3)?.ok_or_else(|| format!("column `{name}`: Int type without parameters"))?;
            Kind::Int { bits: t.i32_field(0, 0)?, signed: t.u8_field(1, 0)? != 0 }
        }
        3 => {
            let t = field.table(3)?.ok_or_else(|| format!("column `{name}`: float type without parameters"))?;
            Kind::Float { precision: t.i16_field(0, 0)? }
        }
        5 => Kind::Utf8 { large: false },
        6 => Kind::Bool,
        12 => Kind::List { large: false },
        20 => Kind::Utf8 { large: true },
        21 => Kind::List { large: true },
        other => {
            return Err(format!(
                "column `{name}`: Arrow type {other} is not supported (expected null, bool, int, float, utf8 or list)"
            ));
        }
    };
    let children = field.tables(5)?.iter().map(read_field).collect::<FbResult<Vec<_>>>()?;
    if matches!(kind, Kind::List { .. }) && children.len() != 1 {
        return Err(format!("column `{name}`: a list needs one child field, found {}", children.len()));
    }
    Ok(FieldType { name, kind, children })
}

/// Walks the flattened nodes and buffers of a record batch.
struct Batch<'a> {
    body: &'a [u8],
    nodes: std::vec::IntoIter<(i64, i64)>,
    buffers: std::vec::IntoIter<(i64, i64)>,
}

impl<'a> Batch<'a> {
    fn buffer(&mut self, column: &str) -> FbResult<&'a [u8]> {
        let (offset, len) = self.buffers.next().ok_or_else(|| format!("column `{column}`: missing buffer"))?;
        let (offset, len) = (usize::try_from(offset), usize::try_from(len));
        let (Ok(offset), Ok(len)) = (offset, len) else {
            return Err(format!("column `{column}`: negative buffer offset or length"));
        };
        self.body.get(offset..offset + len).ok_or_else(|| format!("column `{column}`: buffer outside the body"))
    }

    fn node(&mut self, column: &str) -> FbResult<usize> {
        let (len, _nulls) = self.nodes.next().ok_or_else(|| format!("column `{column}`: missing field node"))?;
        usize::try_from(len).map_err(|_| format!("column `{column}`: negative length"))
    }

    /// Decodes one column (and its children) into `len` values.
    fn column(&mut self, field: &FieldType) -> FbResult<Vec<Value>> {
        let name = field.name.as_str();
        let len = self.node(name)?;
        if field.kind == Kind::Null {
            return Ok(vec![Value::Null; len]);
        }
        let validity = self.buffer(name)?;
        let valid = |i: usize| validity.is_empty() || validity.get(i / 8).is_some_and(|b| b >> (i % 8) & 1 == 1);
        let short = || format!("column `{name}`: buffer shorter than {len} values");
        let mut out = Vec::with_capacity(len);
        match &field.kind {
            Kind::Null => {}
            Kind::Bool => {
                let values = self.buffer(name)?;
                for i in 0..len {
                    let bit = values.get(i / 8).ok_or_else(short)? >> (i % 8) & 1 == 1;
                    out.push(if valid(i) { Value::Bool(bit) } else { Value::Null });
                }
            }
            Kind::Int { bits, signed } => {
                let values = self.buffer(name)?;
                let width = (*bits / 8) as usize;
                if ![1, 2, 4, 8].contains(&width) {
                    return Err(format!("column `{name}`: integer width {bits} bits"));
                }
                for i in 0..len {
                    let b = values.get(i * width..(i + 1) * width).ok_or_else(short)?;
                    let mut le = [0u8; 8];
                    le[..width].copy_from_slice(b);
                    let negative = *signed && b[width - 1] & 0x80 != 0;
                    if negative {
                        le[width..].fill(0xFF);
                    }
                    let v = if *signed || width < 8 {
                        Value::Int(i64::from_le_bytes(le))
                    } else {
                        let u = u64::from_le_bytes(le);
                        i64::try_from(u).map_or(Value::UInt(u), Value::Int)
                    };
                    out.push(if valid(i) { v } else { Value::Null });
                }
            }
            Kind::Float { precision } => {
                let values = self.buffer(name)?;
                let width = match precision {
                    0 => 2,
                    1 => 4,
                    _ => 8,
                };
                for i in 0..len {
                    let b = values.get(i * width..(i + 1) * width).ok_or_else(short)?;
                    let x = match width {
                        2 => f64::from(half::f16::from_le_bytes([b[0], b[1]])),
                        4 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                        _ => f64::from_le_bytes(b.try_into().map_err(|_| short())?),
                    };
                    out.push(if valid(i) { Value::Float(x) } else { Value::Null });
                }
            }
            Kind::Utf8 { large } => {
                let offsets = offsets(self.buffer(name)?, len, *large).ok_or_else(short)?;
                let data = self.buffer(name)?;
                for i in 0..len {
                    if !valid(i) {
                        out.push(Value::Null);
                        continue;
                    }
                    let b = data.get(offsets[i]..offsets[i + 1]).ok_or_else(short)?;
                    let s = std::str::from_utf8(b).map_err(|_| format!("column `{name}`: value {i} is not UTF-8"))?;
                    out.push(Value::Str(s.to_owned()));
                }
            }
            Kind::List { large } => {
                let offsets = offsets(self.buffer(name)?, len, *large).ok_or_else(short)?;
                let child = self.column(&field.children[0])?;
                for i in 0..len {
                    if !valid(i) {
                        out.push(Value::Null);
                        continue;
                    }
                    let items = child.get(offsets[i]..offsets[i + 1]).ok_or_else(short)?;
                    out.push(Value::List(items.to_vec()));
                }
            }
        }
        Ok(out)
    }
}

/// `len + 1` offsets (32- or 64-bit), or `None` when the buffer is too short or they are negative.
fn offsets(buf: &[u8], len: usize, large: bool) -> Option<Vec<usize>> {
    (0..=len)
        .map(|i| {
            if large {
                usize::try_from(read_i64(buf, 8 * i)?).ok()
            } else {
                Some(read_u32(buf, 4 * i)? as usize)
            }
        })
        .collect()
}

fn read_batch(batch: &Fb<'_>, body: &[u8], fields: &[FieldType]) -> FbResult<Vec<Row>> {
    if batch.field(3)?.is_some() {
        return Err("compressed record batches are not supported".into());
    }
    let len = usize::try_from(batch.i64_field(0, 0)?).map_err(|_| "negative batch length")?;
    let mut walk = Batch { body, nodes: batch.pairs(1)?.into_iter(), buffers: batch.pairs(2)?.into_iter() };
    let columns = fields.iter().map(|f| walk.column(f)).collect::<FbResult<Vec<_>>>()?;
    let mut rows: Vec<Row> = (0..len).map(|_| Row::new()).collect();
    for (field, values) in fields.iter().zip(columns) {
        if values.len() != len {
            return Err(format!("column `{}` has {} values, the batch {len} rows", field.name, values.len()));
        }
        for (row, v) in rows.iter_mut().zip(values) {
            row.insert(field.name.clone(), v);
        }
    }
    Ok(rows)
}
