//! PostgreSQL values in their binary wire form (binary `COPY`, binary `pgoutput`, binary query
//! results) decoded into the few shapes a record is made of.
//!
//! One decoder serves the snapshot, the logical follower and the trigger follower, so a row reads
//! the same whichever path brought it.

use serde_json::Value as Json;

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_UNIX_SECS: i64 = 946_684_800;

/// How a column's type is decoded; chosen once per column from `pg_type.typname`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// `uuid`: a lowercase hyphenated string.
    Uuid,
    /// `text`, `varchar`, `bpchar`, `name`, `citext`.
    Text,
    /// `jsonb` (version byte, then JSON text).
    Jsonb,
    /// `json` (JSON text).
    Json,
    /// `timestamp`: epoch seconds.
    Timestamp,
    /// `timestamptz`: epoch seconds.
    Timestamptz,
    /// `date`: epoch seconds of its midnight (UTC).
    Date,
    /// `int2`.
    Int2,
    /// `int4`.
    Int4,
    /// `int8`.
    Int8,
    /// `float4`.
    Float4,
    /// `float8`.
    Float8,
    /// `bool`.
    Bool,
    /// `numeric`: an int when it has no fraction and fits, a float otherwise.
    Numeric,
    /// pgvector's `vector`.
    Vector,
    /// `real[]` (`_float4`).
    Float4Array,
    /// `double precision[]` (`_float8`).
    Float8Array,
    /// `text[]` / `varchar[]`.
    TextArray,
    /// `int4[]` / `int8[]`.
    IntArray,
}

impl ColumnKind {
    /// The decoder for a type name, or `None` when the type is not supported.
    pub fn from_type_name(name: &str) -> Option<ColumnKind> {
        Some(match name {
            "uuid" => ColumnKind::Uuid,
            "text" | "varchar" | "bpchar" | "name" | "citext" => ColumnKind::Text,
            "jsonb" => ColumnKind::Jsonb,
            "json" => ColumnKind::Json,
            "timestamp" => ColumnKind::Timestamp,
            "timestamptz" => ColumnKind::Timestamptz,
            "date" => ColumnKind::Date,
            "int2" => ColumnKind::Int2,
            "int4" => ColumnKind::Int4,
            "int8" => ColumnKind::Int8,
            "float4" => ColumnKind::Float4,
            "float8" => ColumnKind::Float8,
            "bool" => ColumnKind::Bool,
            "numeric" => ColumnKind::Numeric,
            "vector" => ColumnKind::Vector,
            "_float4" => ColumnKind::Float4Array,
            "_float8" => ColumnKind::Float8Array,
            "_text" | "_varchar" => ColumnKind::TextArray,
            "_int4" | "_int8" => ColumnKind::IntArray,
            _ => return None,
        })
    }

    /// Whether the column can hold a record's embedding.
    pub fn is_vector(self) -> bool {
        matches!(
            self,
            ColumnKind::Vector | ColumnKind::Float4Array | ColumnKind::Float8Array
        )
    }

    /// Whether the column holds JSON that is expanded into metadata keys.
    pub fn is_json(self) -> bool {
        matches!(self, ColumnKind::Jsonb | ColumnKind::Json)
    }
}

/// A decoded, non-NULL column value.
#[derive(Debug, Clone, PartialEq)]
pub enum PgValue {
    /// Booleans.
    Bool(bool),
    /// Integers, timestamps (epoch seconds) and integral numerics.
    Int(i64),
    /// Floats and fractional numerics.
    Float(f64),
    /// Text and UUIDs.
    Str(String),
    /// JSON documents.
    Json(Json),
    /// Vectors and float arrays.
    Vector(Vec<f32>),
    /// Text arrays.
    StrArray(Vec<String>),
    /// Integer arrays.
    IntArray(Vec<i64>),
}

/// Why a value could not be decoded; the message names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(msg.into()))
}

/// A cursor over a binary value that fails instead of panicking on short input.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return err(format!(
                "value truncated: need {n} bytes, have {}",
                self.0.len()
            ));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let b = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }
    fn i16(&mut self) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    fn f32(&mut self) -> Result<f32, DecodeError> {
        Ok(f32::from_be_bytes(self.array()?))
    }
    fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_be_bytes(self.array()?))
    }
    fn done(&self) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            err(format!("{} trailing bytes after value", self.0.len()))
        }
    }
}

/// Decodes one non-NULL binary value of the given kind.
pub fn decode_binary(kind: ColumnKind, bytes: &[u8]) -> Result<PgValue, DecodeError> {
    let mut r = Reader(bytes);
    let v = match kind {
        ColumnKind::Uuid => {
            let b: [u8; 16] = r.array()?;
            PgValue::Str(uuid::Uuid::from_bytes(b).hyphenated().to_string())
        }
        ColumnKind::Text => PgValue::Str(utf8(r.take(bytes.len())?)?),
        ColumnKind::Jsonb => {
            let version = r.take(1)?[0];
            if version != 1 {
                return err(format!("unsupported jsonb binary version {version}"));
            }
            PgValue::Json(json(r.take(bytes.len() - 1)?)?)
        }
        ColumnKind::Json => PgValue::Json(json(r.take(bytes.len())?)?),
        ColumnKind::Timestamp | ColumnKind::Timestamptz => {
            let micros = r.i64()?;
            if micros == i64::MAX || micros == i64::MIN {
                return err("timestamp 'infinity' has no epoch seconds");
            }
            PgValue::Int(micros.div_euclid(1_000_000) + PG_EPOCH_UNIX_SECS)
        }
        ColumnKind::Date => {
            let days = r.i32()?;
            if days == i32::MAX || days == i32::MIN {
                return err("date 'infinity' has no epoch seconds");
            }
            PgValue::Int(i64::from(days) * 86_400 + PG_EPOCH_UNIX_SECS)
        }
        ColumnKind::Int2 => PgValue::Int(i64::from(r.i16()?)),
        ColumnKind::Int4 => PgValue::Int(i64::from(r.i32()?)),
        ColumnKind::Int8 => PgValue::Int(r.i64()?),
        ColumnKind::Float4 => PgValue::Float(f64::from(r.f32()?)),
        ColumnKind::Float8 => PgValue::Float(r.f64()?),
        ColumnKind::Bool => PgValue::Bool(r.take(1)?[0] != 0),
        ColumnKind::Numeric => numeric(&mut r)?,
        ColumnKind::Vector => {
            let dim = usize::from(r.u16()?);
            let _unused = r.u16()?;
            let mut v = Vec::with_capacity(dim);
            for _ in 0..dim {
                v.push(r.f32()?);
            }
            PgValue::Vector(v)
        }
        ColumnKind::Float4Array => PgValue::Vector(array(&mut r, |e| Reader(e).f32())?),
        ColumnKind::Float8Array => PgValue::Vector(array(&mut r, |e| Ok(Reader(e).f64()? as f32))?),
        ColumnKind::TextArray => PgValue::StrArray(array(&mut r, utf8)?),
        ColumnKind::IntArray => PgValue::IntArray(array(&mut r, |e| match e.len() {
            4 => Ok(i64::from(Reader(e).i32()?)),
            8 => Reader(e).i64(),
            n => err(format!("integer array element of {n} bytes")),
        })?),
    };
    r.done()?;
    Ok(v)
}

fn utf8(b: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(b.to_vec()).or_else(|_| err("text is not UTF-8"))
}

fn json(b: &[u8]) -> Result<Json, DecodeError> {
    serde_json::from_slice(b).or_else(|e| err(format!("invalid JSON: {e}")))
}

/// A one-dimensional array without NULL elements (the only shape a record field can take).
fn array<T>(
    r: &mut Reader<'_>,
    elem: impl Fn(&[u8]) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let ndim = r.i32()?;
    let _has_nulls = r.i32()?;
    let _elem_oid = r.i32()?;
    if ndim == 0 {
        return Ok(Vec::new());
    }
    if ndim != 1 {
        return err(format!("{ndim}-dimensional array (only 1 is supported)"));
    }
    let len = r.i32()?;
    let _lower = r.i32()?;
    let len = usize::try_from(len).or_else(|_| err("negative array length"))?;
    let mut out = Vec::with_capacity(len.min(1 << 16));
    for _ in 0..len {
        let n = r.i32()?;
        if n < 0 {
            return err("array element is NULL");
        }
        out.push(elem(r.take(n as usize)?)?);
    }
    Ok(out)
}

/// `numeric`: base-10000 digits with a weight; NaN and infinities are not representable.
fn numeric(r: &mut Reader<'_>) -> Result<PgValue, DecodeError> {
    let ndigits = r.i16()?;
    let weight = i32::from(r.i16()?);
    let sign = r.u16()?;
    let dscale = r.u16()?;
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return err("numeric NaN is not representable"),
        _ => return err("numeric infinity is not representable"),
    }
    let mut digits = Vec::with_capacity(ndigits.max(0) as usize);
    for _ in 0..ndigits {
        digits.push(i64::from(r.i16()?));
    }
    let negative = sign == 0x4000;
    // Integral when no digit sits right of the decimal point.
    if dscale == 0 && (0..5).contains(&weight) {
        let mut acc: i128 = 0;
        for i in 0..=weight {
            let d = digits.get(i as usize).copied().unwrap_or(0);
            acc = acc * 10_000 + i128::from(d);
        }
        let acc = if negative { -acc } else { acc };
        if let Ok(v) = i64::try_from(acc) {
            return Ok(PgValue::Int(v));
        }
    }
    let mut acc = 0f64;
    for (i, d) in digits.iter().enumerate() {
        acc += (*d as f64) * 10_000f64.powi(weight - i as i32);
    }
    if !acc.is_finite() {
        return err("numeric out of float range");
    }
    Ok(PgValue::Float(if negative { -acc } else { acc }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_binary_roundtrip() {
        let mut b = vec![0, 3, 0, 0];
        for f in [1.5f32, -2.0, 0.25] {
            b.extend_from_slice(&f.to_be_bytes());
        }
        assert_eq!(
            decode_binary(ColumnKind::Vector, &b).unwrap(),
            PgValue::Vector(vec![1.5, -2.0, 0.25])
        );
        assert!(decode_binary(ColumnKind::Vector, &b[..9]).is_err());
    }

    #[test]
    fn timestamp_is_epoch_seconds() {
        // 2000-01-01 00:00:01.5 → 946684801
        let b = 1_500_000i64.to_be_bytes();
        assert_eq!(
            decode_binary(ColumnKind::Timestamp, &b).unwrap(),
            PgValue::Int(946_684_801)
        );
        // Before the epoch rounds down, not toward zero.
        let b = (-1i64).to_be_bytes();
        assert_eq!(
            decode_binary(ColumnKind::Timestamp, &b).unwrap(),
            PgValue::Int(946_684_799)
        );
        assert!(decode_binary(ColumnKind::Timestamp, &i64::MAX.to_be_bytes()).is_err());
    }

    #[test]
    fn uuid_is_lowercase() {
        let u = uuid::Uuid::parse_str("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11").unwrap();
        assert_eq!(
            decode_binary(ColumnKind::Uuid, u.as_bytes()).unwrap(),
            PgValue::Str("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into())
        );
    }

    #[test]
    fn numeric_int_and_fraction() {
        // 12345678 = [1234, 5678], weight 1
        let mut b = Vec::new();
        for x in [2i16, 1, 0, 0, 1234, 5678] {
            b.extend_from_slice(&x.to_be_bytes());
        }
        assert_eq!(
            decode_binary(ColumnKind::Numeric, &b).unwrap(),
            PgValue::Int(12_345_678)
        );
        // -1.5 = [1, 5000], weight 0, dscale 1
        let mut b = Vec::new();
        for x in [2i16, 0, 0x4000u16 as i16, 1, 1, 5000] {
            b.extend_from_slice(&x.to_be_bytes());
        }
        assert_eq!(
            decode_binary(ColumnKind::Numeric, &b).unwrap(),
            PgValue::Float(-1.5)
        );
    }

    #[test]
    fn float4_array() {
        let mut b = Vec::new();
        for x in [1i32, 0, 700, 2, 1] {
            b.extend_from_slice(&x.to_be_bytes());
        }
        for f in [0.5f32, 2.0] {
            b.extend_from_slice(&4i32.to_be_bytes());
            b.extend_from_slice(&f.to_be_bytes());
        }
        assert_eq!(
            decode_binary(ColumnKind::Float4Array, &b).unwrap(),
            PgValue::Vector(vec![0.5, 2.0])
        );
    }

    #[test]
    fn garbage_never_panics() {
        let kinds = [
            ColumnKind::Uuid,
            ColumnKind::Jsonb,
            ColumnKind::Numeric,
            ColumnKind::Vector,
            ColumnKind::Float4Array,
            ColumnKind::TextArray,
            ColumnKind::IntArray,
        ];
        for k in kinds {
            for len in 0..40 {
                let b: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
                let _ = decode_binary(k, &b);
            }
        }
    }
}
