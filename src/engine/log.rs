//! What a WAL record holds: the *resolved* effect of one batch, not the caller's request.
//! Adds whose ids already existed are gone, upserts and updates carry the merged result, deletes
//! by filter carry the ids they matched. Replay is therefore a plain sequence of puts and
//! deletes whose meaning cannot drift if the merge or filter rules change in a later version.

use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use crate::types::{Metadata, SourcePosition};

/// One resolved change.
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub(crate) enum LogOp {
    /// The complete new version of a record: it replaces the live version, if any. It carries
    /// everything (the vector too, even for a metadata-only update) so that replay needs nothing
    /// from the state it replaces — tombstones persisted by a flush may already cover it.
    Put {
        /// The record id.
        id: String,
        /// The record's first-insert number (kept across updates: `get` order).
        first_seq: u64,
        /// The vector.
        embedding: Vec<f32>,
        /// Full metadata after the merge.
        metadata: Option<Metadata>,
        /// Document after the merge.
        document: Option<String>,
        /// Uri after the merge.
        uri: Option<String>,
    },
    /// Remove the record.
    Delete {
        /// The record id.
        id: String,
    },
}

/// The payload of one WAL record.
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub(crate) struct LogEntry {
    /// Changes, applied in order.
    pub ops: Vec<LogOp>,
    /// The external change-feed position this batch brings the collection to.
    pub source_position: Option<SourcePosition>,
}

impl LogEntry {
    pub(crate) fn encode(&self) -> Result<AlignedVec, rancor::Error> {
        rkyv::to_bytes::<rancor::Error>(self)
    }

    /// Decodes and validates a payload (bytecheck), so a damaged record is an error, never UB.
    pub(crate) fn decode(payload: &[u8]) -> Result<LogEntry, rancor::Error> {
        // rkyv needs aligned input; WAL payloads sit at arbitrary offsets in the file buffer.
        let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
        aligned.extend_from_slice(payload);
        rkyv::from_bytes::<LogEntry, rancor::Error>(&aligned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::MetadataValue;

    #[test]
    fn round_trip_and_garbage_is_an_error() {
        let mut m = Metadata::new();
        m.insert("i".into(), MetadataValue::Int(3));
        m.insert("f".into(), MetadataValue::Float(3.0));
        m.insert("a".into(), MetadataValue::StrArray(vec!["x".into()]));
        let e = LogEntry {
            ops: vec![
                LogOp::Put {
                    id: "a".into(),
                    first_seq: 7,
                    embedding: vec![1.0, 2.5],
                    metadata: Some(m),
                    document: Some("doc".into()),
                    uri: None,
                },
                LogOp::Delete { id: "b".into() },
            ],
            source_position: Some(SourcePosition("0/16B3748".into())),
        };
        let bytes = e.encode().unwrap();
        assert_eq!(LogEntry::decode(&bytes).unwrap(), e);
        assert!(LogEntry::decode(&[0xFF; 64]).is_err());
        // The CRC rejects damaged records before decoding; decoding must still never panic on
        // any prefix (rkyv reads its root from the end, so a prefix may even validate).
        for cut in 0..bytes.len() {
            let _ = LogEntry::decode(&bytes[..cut]);
        }
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = LogEntry::decode(&bytes);
        }
    }
}
