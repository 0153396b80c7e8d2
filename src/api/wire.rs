//! Chroma's wire shapes for record operations (serde) and their conversion to and from the
//! engine's types. Decoding is strict where Chroma is (422 for wrong shapes) and the values that
//! need checks beyond shape (base64, null metadata on add) fail with Chroma's messages.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use serde_json::value::RawValue;

use super::error::ApiError;
use super::floats::{parse_f32_array, FloatArray};
use crate::types::{Include, Metadata, MetadataPatch, MetadataValue, SparseVector};

/// One embedding as sent: a JSON array of numbers, or base64 of little-endian f32 bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum WireEmbedding {
    /// `[0.1, 0.2, …]`.
    Floats(Vec<f32>),
    /// `"AACAPw…"`, decoded later so a bad string is a 400, not a 422.
    Base64(String),
}

impl<'de> Deserialize<'de> for WireEmbedding {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WireEmbedding;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of numbers or a base64 string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<WireEmbedding, E> {
                Ok(WireEmbedding::Base64(s.to_owned()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<WireEmbedding, E> {
                Ok(WireEmbedding::Base64(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<WireEmbedding, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(x) = seq.next_element::<f32>()? {
                    v.push(x);
                }
                Ok(WireEmbedding::Floats(v))
            }
        }
        // Arrays of numbers take the fast path (see `floats`); strings and anything malformed
        // go through the visitor, which also words the errors.
        let raw = Box::<RawValue>::deserialize(d)?;
        if let Some(v) = parse_f32_array(raw.get()) {
            return Ok(WireEmbedding::Floats(v));
        }
        (&*raw).deserialize_any(V).map_err(de::Error::custom)
    }
}

impl WireEmbedding {
    /// The vector, decoding base64 (400 `Invalid base64 string: …` when malformed).
    pub fn into_vec(self) -> Result<Vec<f32>, ApiError> {
        match self {
            WireEmbedding::Floats(v) => Ok(v),
            WireEmbedding::Base64(s) => decode_base64_f32(&s),
        }
    }
}

/// Decodes standard padded base64 of little-endian f32 values.
pub fn decode_base64_f32(s: &str) -> Result<Vec<f32>, ApiError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| ApiError::InvalidArgument(format!("Invalid base64 string: {e}")))?;
    if bytes.len() % 4 != 0 {
        return Err(ApiError::InvalidArgument(format!(
            "Invalid base64 string: decoded length {} is not a multiple of 4 bytes (f32)",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// A metadata value as sent; `Null` is kept so add (422) and upsert/update (delete the key)
/// can treat it differently.
#[derive(Debug, Clone, PartialEq)]
pub enum WireValue {
    /// JSON `null`.
    Null,
    /// Any storable value.
    Value(MetadataValue),
}

const UNTAGGED: &str = "data did not match any variant of untagged enum MetadataValue";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SparseIn {
    #[serde(rename = "#type")]
    ty: String,
    indices: Vec<u32>,
    values: Vec<f32>,
    #[serde(default)]
    tokens: Option<Vec<String>>,
}

/// One array element while reading an array value.
enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(b))
            }
            fn visit_i64<E: de::Error>(self, i: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(i))
            }
            fn visit_u64<E: de::Error>(self, u: u64) -> Result<Scalar, E> {
                Ok(i64::try_from(u)
                    .map(Scalar::Int)
                    .unwrap_or(Scalar::Float(u as f64)))
            }
            fn visit_f64<E: de::Error>(self, f: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(f))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(s.to_owned()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Scalar, E> {
                Ok(Scalar::Str(s))
            }
        }
        d.deserialize_any(V)
    }
}

fn array_value(items: Vec<Scalar>) -> Option<MetadataValue> {
    let Some(first) = items.first() else {
        // Empty arrays are rejected by validation with Chroma's "Invalid metadata" message.
        return Some(MetadataValue::StrArray(vec![]));
    };
    match first {
        Scalar::Bool(_) => items
            .into_iter()
            .map(|s| {
                if let Scalar::Bool(b) = s {
                    Some(b)
                } else {
                    None
                }
            })
            .collect::<Option<Vec<_>>>()
            .map(MetadataValue::BoolArray),
        Scalar::Str(_) => items
            .into_iter()
            .map(|s| {
                if let Scalar::Str(b) = s {
                    Some(b)
                } else {
                    None
                }
            })
            .collect::<Option<Vec<_>>>()
            .map(MetadataValue::StrArray),
        Scalar::Int(_) | Scalar::Float(_) => {
            if items.iter().all(|s| matches!(s, Scalar::Int(_))) {
                items
                    .into_iter()
                    .map(|s| {
                        if let Scalar::Int(i) = s {
                            Some(i)
                        } else {
                            None
                        }
                    })
                    .collect::<Option<Vec<_>>>()
                    .map(MetadataValue::IntArray)
            } else {
                items
                    .into_iter()
                    .map(|s| match s {
                        Scalar::Int(i) => Some(i as f64),
                        Scalar::Float(f) => Some(f),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()
                    .map(MetadataValue::FloatArray)
            }
        }
    }
}

impl<'de> Deserialize<'de> for WireValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WireValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a metadata value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<WireValue, E> {
                Ok(WireValue::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<WireValue, E> {
                Ok(WireValue::Null)
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<WireValue, E> {
                Ok(WireValue::Value(MetadataValue::Bool(b)))
            }
            fn visit_i64<E: de::Error>(self, i: i64) -> Result<WireValue, E> {
                Ok(WireValue::Value(MetadataValue::Int(i)))
            }
            fn visit_u64<E: de::Error>(self, u: u64) -> Result<WireValue, E> {
                // Integers beyond i64 are stored as float, as Chroma does.
                Ok(WireValue::Value(
                    i64::try_from(u)
                        .map(MetadataValue::Int)
                        .unwrap_or(MetadataValue::Float(u as f64)),
                ))
            }
            fn visit_f64<E: de::Error>(self, f: f64) -> Result<WireValue, E> {
                Ok(WireValue::Value(MetadataValue::Float(f)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<WireValue, E> {
                Ok(WireValue::Value(MetadataValue::Str(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<WireValue, E> {
                Ok(WireValue::Value(MetadataValue::Str(s)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<WireValue, A::Error> {
                let mut items = Vec::new();
                while let Some(x) = seq
                    .next_element::<Scalar>()
                    .map_err(|_| de::Error::custom(UNTAGGED))?
                {
                    items.push(x);
                }
                array_value(items)
                    .map(WireValue::Value)
                    .ok_or_else(|| de::Error::custom(UNTAGGED))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<WireValue, A::Error> {
                let sv = SparseIn::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map_err(|_| de::Error::custom(UNTAGGED))?;
                if sv.ty != "sparse_vector" {
                    return Err(de::Error::custom(UNTAGGED));
                }
                Ok(WireValue::Value(MetadataValue::SparseVector(
                    SparseVector {
                        indices: sv.indices,
                        values: sv.values,
                        tokens: sv.tokens,
                    },
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// A record's metadata object as sent.
pub type WireMetadata = BTreeMap<String, WireValue>;

/// Converts add metadata: a null value is a 422, as in Chroma; `{}` is stored as no metadata.
pub fn metadata_for_add(index: usize, m: WireMetadata) -> Result<Option<Metadata>, ApiError> {
    let mut out = Metadata::new();
    for (k, v) in m {
        match v {
            WireValue::Value(v) => {
                out.insert(k, v);
            }
            WireValue::Null => {
                return Err(ApiError::Unprocessable(format!(
                    "Failed to deserialize the JSON body into the target type: metadatas[{index}].{k}: {UNTAGGED}"
                )))
            }
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// Converts upsert/update metadata: a null value deletes the key.
pub fn metadata_patch(m: WireMetadata) -> Option<MetadataPatch> {
    let out: MetadataPatch = m
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                match v {
                    WireValue::Null => None,
                    WireValue::Value(v) => Some(v),
                },
            )
        })
        .collect();
    (!out.is_empty()).then_some(out)
}

/// Serialises one metadata value in Chroma's wire form (ints stay ints, floats stay floats).
pub struct ValueOut<'a>(pub &'a MetadataValue);

impl Serialize for ValueOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            MetadataValue::Bool(b) => s.serialize_bool(*b),
            MetadataValue::Int(i) => s.serialize_i64(*i),
            MetadataValue::Float(f) => s.serialize_f64(*f),
            MetadataValue::Str(v) => s.serialize_str(v),
            MetadataValue::BoolArray(v) => v.serialize(s),
            MetadataValue::IntArray(v) => v.serialize(s),
            MetadataValue::FloatArray(v) => v.serialize(s),
            MetadataValue::StrArray(v) => v.serialize(s),
            MetadataValue::SparseVector(sv) => {
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("#type", "sparse_vector")?;
                m.serialize_entry("indices", &sv.indices)?;
                m.serialize_entry("values", &sv.values)?;
                if let Some(t) = &sv.tokens {
                    m.serialize_entry("tokens", t)?;
                }
                m.end()
            }
        }
    }
}

/// Serialises a record's metadata map.
pub struct MetadataOut<'a>(pub &'a Metadata);

impl Serialize for MetadataOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, ValueOut(v))))
    }
}

/// Serialises a column of optional metadata maps.
pub struct MetadataColumn<'a>(pub &'a [Option<Metadata>]);

impl Serialize for MetadataColumn<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|m| m.as_ref().map(MetadataOut)))
    }
}

/// One value of `include`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncludeField {
    /// Documents.
    Documents,
    /// Embeddings.
    Embeddings,
    /// Metadatas.
    Metadatas,
    /// Distances (query only; accepted and ignored by get).
    Distances,
    /// Uris.
    Uris,
}

/// Default `include` of `get`.
pub const GET_INCLUDE_DEFAULT: &[IncludeField] =
    &[IncludeField::Documents, IncludeField::Metadatas];
/// Default `include` of `query`.
pub const QUERY_INCLUDE_DEFAULT: &[IncludeField] = &[
    IncludeField::Documents,
    IncludeField::Metadatas,
    IncludeField::Distances,
];

/// Turns an `include` list into the engine's flags.
pub fn include_flags(fields: &[IncludeField]) -> Include {
    let mut inc = Include::default();
    for f in fields {
        match f {
            IncludeField::Documents => inc.documents = true,
            IncludeField::Embeddings => inc.embeddings = true,
            IncludeField::Metadatas => inc.metadatas = true,
            IncludeField::Distances => inc.distances = true,
            IncludeField::Uris => inc.uris = true,
        }
    }
    inc
}

/// `add` and `upsert` body. Without `embeddings`, the server embeds `documents` (vectord's
/// extension); with neither it is Chroma's 422 for the missing field.
#[derive(Debug, Deserialize)]
pub struct AddRequest {
    /// Record ids.
    pub ids: Vec<String>,
    /// One embedding per id; absent or `null` = embed the documents.
    #[serde(default)]
    pub embeddings: Option<Vec<WireEmbedding>>,
    /// One metadata object (or null) per id.
    #[serde(default)]
    pub metadatas: Option<Vec<Option<WireMetadata>>>,
    /// One document (or null) per id.
    #[serde(default)]
    pub documents: Option<Vec<Option<String>>>,
    /// One uri (or null) per id.
    #[serde(default)]
    pub uris: Option<Vec<Option<String>>>,
}

/// `update` body; every column is optional and embeddings may hold nulls.
#[derive(Debug, Deserialize)]
pub struct UpdateRequest {
    /// Record ids.
    pub ids: Vec<String>,
    /// One embedding (or null) per id.
    #[serde(default)]
    pub embeddings: Option<Vec<Option<WireEmbedding>>>,
    /// One metadata patch (or null) per id.
    #[serde(default)]
    pub metadatas: Option<Vec<Option<WireMetadata>>>,
    /// One document (or null) per id.
    #[serde(default)]
    pub documents: Option<Vec<Option<String>>>,
    /// One uri (or null) per id.
    #[serde(default)]
    pub uris: Option<Vec<Option<String>>>,
}

/// `delete` body.
#[derive(Debug, Default, Deserialize)]
pub struct DeleteRequest {
    /// Only these ids.
    #[serde(default)]
    pub ids: Option<Vec<String>>,
    /// Metadata filter.
    #[serde(default, rename = "where")]
    pub where_: Option<serde_json::Value>,
    /// Document filter.
    #[serde(default)]
    pub where_document: Option<serde_json::Value>,
    /// At most this many (requires a filter).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `get` body.
#[derive(Debug, Default, Deserialize)]
pub struct GetRecordsRequest {
    /// Only these ids.
    #[serde(default)]
    pub ids: Option<Vec<String>>,
    /// Metadata filter.
    #[serde(default, rename = "where")]
    pub where_: Option<serde_json::Value>,
    /// Document filter.
    #[serde(default)]
    pub where_document: Option<serde_json::Value>,
    /// Page size.
    #[serde(default)]
    pub limit: Option<u32>,
    /// Page start.
    #[serde(default)]
    pub offset: Option<u32>,
    /// Fields to return.
    #[serde(default)]
    pub include: Option<Vec<IncludeField>>,
}

/// `query` body. `query_embeddings` must be plain arrays (a base64 string is a 422).
/// `query_texts` (vectord's extension) is embedded by the server instead; exactly one is given.
#[derive(Debug, Deserialize)]
pub struct QueryRecordsRequest {
    /// Query vectors.
    #[serde(default)]
    pub query_embeddings: Option<Vec<FloatArray>>,
    /// Query texts, embedded with the collection's model.
    #[serde(default)]
    pub query_texts: Option<Vec<String>>,
    /// Results per vector (default 10).
    #[serde(default)]
    pub n_results: Option<u32>,
    /// Restrict to these ids.
    #[serde(default)]
    pub ids: Option<Vec<String>>,
    /// Metadata filter.
    #[serde(default, rename = "where")]
    pub where_: Option<serde_json::Value>,
    /// Document filter.
    #[serde(default)]
    pub where_document: Option<serde_json::Value>,
    /// Fields to return.
    #[serde(default)]
    pub include: Option<Vec<IncludeField>>,
}

/// `get` response: every column key is present, `null` when not included.
#[derive(Serialize)]
pub struct GetResponse<'a> {
    /// Ids in insertion order.
    pub ids: &'a [String],
    /// Embeddings.
    pub embeddings: Option<&'a [Vec<f32>]>,
    /// Documents.
    pub documents: Option<&'a [Option<String>]>,
    /// Uris.
    pub uris: Option<&'a [Option<String>]>,
    /// Metadatas.
    pub metadatas: Option<MetadataColumn<'a>>,
    /// The effective include list.
    pub include: &'a [IncludeField],
}

/// `query` response: one inner list per query vector.
#[derive(Serialize)]
pub struct QueryResponse<'a> {
    /// Ids, nearest first.
    pub ids: Vec<&'a [String]>,
    /// Embeddings.
    pub embeddings: Option<Vec<&'a [Vec<f32>]>>,
    /// Documents.
    pub documents: Option<Vec<&'a [Option<String>]>>,
    /// Uris.
    pub uris: Option<Vec<&'a [Option<String>]>>,
    /// Metadatas.
    pub metadatas: Option<Vec<MetadataColumn<'a>>>,
    /// Distances.
    pub distances: Option<Vec<&'a [f32]>>,
    /// The effective include list.
    pub include: &'a [IncludeField],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        assert_eq!(
            decode_base64_f32("AACAPwAAAAAAAAAA").unwrap(),
            vec![1.0, 0.0, 0.0]
        );
        assert!(decode_base64_f32("not base64!").is_err());
        assert!(
            decode_base64_f32("AACA").is_err(),
            "3 bytes is not a whole f32"
        );
        let e: WireEmbedding = serde_json::from_str(r#""AACAPwAAAAAAAAAA""#).unwrap();
        assert_eq!(e, WireEmbedding::Base64("AACAPwAAAAAAAAAA".into()));
        let e: WireEmbedding = serde_json::from_str("[1, 0.5]").unwrap();
        assert_eq!(e, WireEmbedding::Floats(vec![1.0, 0.5]));
        assert!(serde_json::from_str::<WireEmbedding>("{}").is_err());
    }

    #[test]
    fn metadata_keeps_int_float_distinct() {
        let m: WireMetadata =
            serde_json::from_str(r#"{"i":1,"f":1.0,"s":"x","b":true,"n":null,"a":[1,2],"fa":[1,2.5],"big":18446744073709551615}"#)
                .unwrap();
        assert_eq!(m["i"], WireValue::Value(MetadataValue::Int(1)));
        assert_eq!(m["f"], WireValue::Value(MetadataValue::Float(1.0)));
        assert_eq!(m["n"], WireValue::Null);
        assert_eq!(
            m["a"],
            WireValue::Value(MetadataValue::IntArray(vec![1, 2]))
        );
        assert_eq!(
            m["fa"],
            WireValue::Value(MetadataValue::FloatArray(vec![1.0, 2.5]))
        );
        assert!(matches!(
            m["big"],
            WireValue::Value(MetadataValue::Float(_))
        ));
        let out = serde_json::to_string(&MetadataOut(
            &[("f".to_string(), MetadataValue::Float(1.0))].into(),
        ))
        .unwrap();
        assert_eq!(out, r#"{"f":1.0}"#);
        assert!(serde_json::from_str::<WireMetadata>(r#"{"o":{"x":1}}"#).is_err());
        assert!(serde_json::from_str::<WireMetadata>(r#"{"a":[1,"x"]}"#).is_err());
        let sv: WireMetadata = serde_json::from_str(
            r##"{"sv":{"#type":"sparse_vector","indices":[1,3],"values":[0.5,1.0]}}"##,
        )
        .unwrap();
        assert!(matches!(
            sv["sv"],
            WireValue::Value(MetadataValue::SparseVector(_))
        ));
    }
}
