//! The checkpoint a sync job stores with every batch (`SourcePosition`), as one line of text:
//!
//! - `snapshot <mode> <lsn|-> [last id]` — copying; rows up to `last id` (in key order) are in,
//!   and (logical mode) the slot's consistent point is `lsn`, where streaming will start;
//! - `logical <lsn>` — streaming; every transaction that committed before `lsn` is in;
//! - `trigger <seq>` — following the change table; `seq` is the last change applied;
//! - `copied` — a snapshot-only job finished.

use super::config::FollowMode;
use crate::types::SourcePosition;

/// A decoded checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// Snapshot in progress.
    Snapshot {
        /// What follows the snapshot.
        mode: FollowMode,
        /// Logical mode: the slot's consistent point.
        lsn: Option<u64>,
        /// The greatest id copied so far (rows are copied in key order).
        last_id: Option<String>,
    },
    /// Streaming from a slot.
    Logical {
        /// Resume point.
        lsn: u64,
    },
    /// Following a change table.
    Trigger {
        /// Last change applied.
        seq: i64,
    },
    /// A snapshot-only job is complete.
    Copied,
}

/// `X/Y` in hex, PostgreSQL's LSN notation.
pub fn lsn_to_string(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Parses PostgreSQL's `X/Y` notation.
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    (hi <= u64::from(u32::MAX) && lo <= u64::from(u32::MAX)).then_some((hi << 32) | lo)
}

impl Position {
    /// The stored form.
    pub fn encode(&self) -> SourcePosition {
        SourcePosition(match self {
            Position::Snapshot { mode, lsn, last_id } => {
                let lsn = lsn.map_or_else(|| "-".to_string(), lsn_to_string);
                match last_id {
                    Some(id) => format!("snapshot {} {lsn} {id}", mode.as_str()),
                    None => format!("snapshot {} {lsn}", mode.as_str()),
                }
            }
            Position::Logical { lsn } => format!("logical {}", lsn_to_string(*lsn)),
            Position::Trigger { seq } => format!("trigger {seq}"),
            Position::Copied => "copied".to_string(),
        })
    }

    /// Reads a stored checkpoint; `None` when it is not one of ours.
    pub fn decode(p: &SourcePosition) -> Option<Position> {
        let mut parts = p.0.splitn(4, ' ');
        match parts.next()? {
            "snapshot" => {
                let mode = match parts.next()? {
                    "logical" => FollowMode::Logical,
                    "trigger" => FollowMode::Trigger,
                    "none" => FollowMode::None,
                    _ => return None,
                };
                let lsn = match parts.next()? {
                    "-" => None,
                    s => Some(parse_lsn(s)?),
                };
                let last_id = parts.next().map(str::to_string);
                Some(Position::Snapshot { mode, lsn, last_id })
            }
            "logical" => Some(Position::Logical {
                lsn: parse_lsn(parts.next()?)?,
            }),
            "trigger" => Some(Position::Trigger {
                seq: parts.next()?.parse().ok()?,
            }),
            "copied" => Some(Position::Copied),
            _ => None,
        }
    }

    /// A short form for status: the LSN or sequence number.
    pub fn describe(&self) -> String {
        match self {
            Position::Snapshot { last_id, .. } => format!(
                "snapshot (last id {})",
                last_id.as_deref().unwrap_or("none yet")
            ),
            Position::Logical { lsn } => lsn_to_string(*lsn),
            Position::Trigger { seq } => seq.to_string(),
            Position::Copied => "copied".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        for p in [
            Position::Snapshot {
                mode: FollowMode::Logical,
                lsn: Some(0x1_016B_3748),
                last_id: Some("a b c".into()),
            },
            Position::Snapshot {
                mode: FollowMode::Trigger,
                lsn: None,
                last_id: None,
            },
            Position::Logical { lsn: 42 },
            Position::Trigger { seq: 7 },
            Position::Copied,
        ] {
            assert_eq!(Position::decode(&p.encode()), Some(p));
        }
        assert_eq!(lsn_to_string(0x1_016B_3748), "1/16B3748");
        assert_eq!(Position::decode(&SourcePosition("nonsense".into())), None);
        assert_eq!(parse_lsn("1/zz"), None);
    }
}
