//! `pgoutput` messages (PostgreSQL's logical replication protocol, version 1) decoded from the
//! `XLogData` payloads the transport hands us. Begin and Commit are decoded by the transport;
//! everything else that concerns rows is here. Values stay raw bytes until the follower knows
//! the column's kind.

use bytes::Bytes;

/// One column of a tuple, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TupleValue {
    /// NULL.
    Null,
    /// A TOASTed value not changed by this update.
    Unchanged,
    /// Text format.
    Text(Bytes),
    /// Binary format (the `binary` option).
    Binary(Bytes),
}

/// A column of a Relation message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelColumn {
    /// Part of the replica identity (key).
    pub key: bool,
    /// Column name.
    pub name: String,
    /// Type OID.
    pub type_oid: u32,
}

/// The messages the follower acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A table's shape; sent before its first change in a session and after DDL.
    Relation {
        /// Relation OID (the id later messages refer to).
        id: u32,
        /// Schema.
        namespace: String,
        /// Table name.
        name: String,
        /// Columns in tuple order.
        columns: Vec<RelColumn>,
    },
    /// A new row.
    Insert {
        /// Relation OID.
        rel: u32,
        /// The row.
        new: Vec<TupleValue>,
    },
    /// A changed row; `old` is the old key (or whole old row) when the key changed or the
    /// replica identity is FULL.
    Update {
        /// Relation OID.
        rel: u32,
        /// Old key / old row.
        old: Option<Vec<TupleValue>>,
        /// The row.
        new: Vec<TupleValue>,
    },
    /// A deleted row's key (or whole row with replica identity FULL).
    Delete {
        /// Relation OID.
        rel: u32,
        /// Key columns at their positions, other columns NULL.
        old: Vec<TupleValue>,
    },
    /// TRUNCATE of one or more tables.
    Truncate {
        /// Relation OIDs.
        rels: Vec<u32>,
    },
    /// Anything else (Type, Origin, logical messages, …): nothing to do.
    Other(u8),
}

/// A payload that does not follow the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pgoutput: {0}")]
pub struct ProtocolError(pub String);

struct Cur {
    b: Bytes,
}

impl Cur {
    fn need(&self, n: usize) -> Result<(), ProtocolError> {
        if self.b.len() < n {
            Err(ProtocolError(format!(
                "message truncated (need {n} bytes, have {})",
                self.b.len()
            )))
        } else {
            Ok(())
        }
    }
    fn u8(&mut self) -> Result<u8, ProtocolError> {
        self.need(1)?;
        let v = self.b[0];
        self.b = self.b.slice(1..);
        Ok(v)
    }
    fn u16(&mut self) -> Result<u16, ProtocolError> {
        self.need(2)?;
        let v = u16::from_be_bytes([self.b[0], self.b[1]]);
        self.b = self.b.slice(2..);
        Ok(v)
    }
    fn u32(&mut self) -> Result<u32, ProtocolError> {
        self.need(4)?;
        let v = u32::from_be_bytes([self.b[0], self.b[1], self.b[2], self.b[3]]);
        self.b = self.b.slice(4..);
        Ok(v)
    }
    fn bytes(&mut self, n: usize) -> Result<Bytes, ProtocolError> {
        self.need(n)?;
        let v = self.b.slice(..n);
        self.b = self.b.slice(n..);
        Ok(v)
    }
    fn cstr(&mut self) -> Result<String, ProtocolError> {
        let end = self
            .b
            .iter()
            .position(|&c| c == 0)
            .ok_or_else(|| ProtocolError("string without terminator".into()))?;
        let s = String::from_utf8(self.b[..end].to_vec())
            .map_err(|_| ProtocolError("name is not UTF-8".into()))?;
        self.b = self.b.slice(end + 1..);
        Ok(s)
    }
    fn tuple(&mut self) -> Result<Vec<TupleValue>, ProtocolError> {
        let n = self.u16()?;
        let mut out = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            out.push(match self.u8()? {
                b'n' => TupleValue::Null,
                b'u' => TupleValue::Unchanged,
                kind @ (b't' | b'b') => {
                    let len = self.u32()? as usize;
                    let v = self.bytes(len)?;
                    if kind == b't' {
                        TupleValue::Text(v)
                    } else {
                        TupleValue::Binary(v)
                    }
                }
                other => {
                    return Err(ProtocolError(format!(
                        "unknown tuple column kind {:?}",
                        other as char
                    )))
                }
            });
        }
        Ok(out)
    }
}

/// Decodes one `XLogData` payload.
pub fn decode(payload: Bytes) -> Result<Message, ProtocolError> {
    let mut c = Cur { b: payload };
    let tag = c.u8()?;
    Ok(match tag {
        b'R' => {
            let id = c.u32()?;
            let namespace = c.cstr()?;
            let name = c.cstr()?;
            let _replica_identity = c.u8()?;
            let n = c.u16()?;
            let mut columns = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                let flags = c.u8()?;
                let name = c.cstr()?;
                let type_oid = c.u32()?;
                let _typmod = c.u32()?;
                columns.push(RelColumn {
                    key: flags & 1 == 1,
                    name,
                    type_oid,
                });
            }
            Message::Relation {
                id,
                namespace,
                name,
                columns,
            }
        }
        b'I' => {
            let rel = c.u32()?;
            match c.u8()? {
                b'N' => Message::Insert {
                    rel,
                    new: c.tuple()?,
                },
                t => return Err(ProtocolError(format!("insert: unexpected {:?}", t as char))),
            }
        }
        b'U' => {
            let rel = c.u32()?;
            let mut old = None;
            let mut t = c.u8()?;
            if t == b'K' || t == b'O' {
                old = Some(c.tuple()?);
                t = c.u8()?;
            }
            if t != b'N' {
                return Err(ProtocolError(format!("update: unexpected {:?}", t as char)));
            }
            Message::Update {
                rel,
                old,
                new: c.tuple()?,
            }
        }
        b'D' => {
            let rel = c.u32()?;
            match c.u8()? {
                b'K' | b'O' => Message::Delete {
                    rel,
                    old: c.tuple()?,
                },
                t => return Err(ProtocolError(format!("delete: unexpected {:?}", t as char))),
            }
        }
        b'T' => {
            let n = c.u32()?;
            let _options = c.u8()?;
            let mut rels = Vec::with_capacity(n.min(1024) as usize);
            for _ in 0..n {
                rels.push(c.u32()?);
            }
            Message::Truncate { rels }
        }
        other => Message::Other(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(b: &mut Vec<u8>, cols: &[Option<&[u8]>]) {
        b.extend_from_slice(&(cols.len() as u16).to_be_bytes());
        for c in cols {
            match c {
                None => b.push(b'n'),
                Some(v) => {
                    b.push(b'b');
                    b.extend_from_slice(&(v.len() as u32).to_be_bytes());
                    b.extend_from_slice(v);
                }
            }
        }
    }

    #[test]
    fn relation_insert_update_delete_truncate() {
        let mut r = vec![b'R'];
        r.extend_from_slice(&16384u32.to_be_bytes());
        r.extend_from_slice(b"healthcare\0policy_embeddings\0d");
        r.extend_from_slice(&1u16.to_be_bytes());
        r.push(1);
        r.extend_from_slice(b"id\0");
        r.extend_from_slice(&2950u32.to_be_bytes());
        r.extend_from_slice(&(-1i32).to_be_bytes());
        match decode(Bytes::from(r)).unwrap() {
            Message::Relation {
                id, name, columns, ..
            } => {
                assert_eq!((id, name.as_str()), (16384, "policy_embeddings"));
                assert!(columns[0].key && columns[0].name == "id");
            }
            m => panic!("{m:?}"),
        }
        let mut u = vec![b'U'];
        u.extend_from_slice(&7u32.to_be_bytes());
        u.push(b'K');
        tuple(&mut u, &[Some(b"old"), None]);
        u.push(b'N');
        u.extend_from_slice(&2u16.to_be_bytes());
        u.push(b'b');
        u.extend_from_slice(&3u32.to_be_bytes());
        u.extend_from_slice(b"new");
        u.push(b'u');
        assert_eq!(
            decode(Bytes::from(u)).unwrap(),
            Message::Update {
                rel: 7,
                old: Some(vec![
                    TupleValue::Binary(Bytes::from_static(b"old")),
                    TupleValue::Null
                ]),
                new: vec![
                    TupleValue::Binary(Bytes::from_static(b"new")),
                    TupleValue::Unchanged
                ],
            }
        );
        let mut t = vec![b'T'];
        t.extend_from_slice(&2u32.to_be_bytes());
        t.push(0);
        t.extend_from_slice(&1u32.to_be_bytes());
        t.extend_from_slice(&2u32.to_be_bytes());
        assert_eq!(
            decode(Bytes::from(t)).unwrap(),
            Message::Truncate { rels: vec![1, 2] }
        );
    }

    #[test]
    fn truncated_payloads_are_errors_not_panics() {
        let mut i = vec![b'I'];
        i.extend_from_slice(&7u32.to_be_bytes());
        i.push(b'N');
        tuple(&mut i, &[Some(b"abcdef")]);
        for n in 0..i.len() {
            assert!(
                decode(Bytes::copy_from_slice(&i[..n])).is_err(),
                "prefix {n}"
            );
        }
        assert!(decode(Bytes::from(i)).is_ok());
    }
}
