//! The write-ahead log: numbered files `wal/NNNNNNNN.log`, each a 16-byte header followed by
//! records `[len u32][crc32c u32][seq u64][payload]` (little-endian; the CRC covers seq and
//! payload). Sequence numbers increase by one per record across files.
//!
//! Durability: a record is acknowledged only once `fdatasync` covered it. [`Durability`]
//! implements group commit — one writer syncs for everyone who appended before it started —
//! so concurrent writers share a sync instead of queueing one each.
//!
//! A failed sync poisons the log; the collection then recovers in place ([`cut_back`],
//! [`Durability::recover_with`]): every file is cut back to the last durable record, a fresh
//! file is started, and the records in doubt (none acknowledged) are dropped from memory too.
//!
//! Recovery replays every record and truncates a torn **tail** only: a bad record in the last
//! file with no valid record after it. A bad record followed by a valid one, or a bad record in
//! an older file, is corruption and recovery stops with the file and offset.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::EngineError;
use crate::fsutil::sync_dir;

const FILE_MAGIC: &[u8; 8] = b"VECTDWAL";
const FORMAT_VERSION: u32 = 1;
const FILE_HEADER_LEN: u64 = 16;
const RECORD_HEADER_LEN: usize = 16;
/// Largest payload accepted: bounds what a garbage length field can make recovery allocate.
pub(crate) const MAX_PAYLOAD: usize = 1 << 30;
/// Start a new file once the current one passes this size (so a future flush can drop whole
/// files instead of rewriting one).
pub(crate) const DEFAULT_ROTATE_BYTES: u64 = 64 << 20;
/// How far past the last good sequence number a stray valid-looking record may claim to be
/// when deciding "torn tail or corruption".
const SEQ_SCAN_WINDOW: u64 = 1 << 20;

fn file_name(no: u64) -> String {
    format!("{no:08}.log")
}

/// The 16 bytes every WAL file starts with.
pub(crate) fn file_header() -> [u8; FILE_HEADER_LEN as usize] {
    let mut h = [0u8; FILE_HEADER_LEN as usize];
    h[..8].copy_from_slice(FILE_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

fn record_crc(seq: u64, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&seq.to_le_bytes()), payload)
}

/// One record as it sits in the file: `[len u32][crc32c u32][seq u64][payload]`. The caller
/// checks `payload.len() <= MAX_PAYLOAD` (the fuzz harness builds files with it too).
pub(crate) fn encode_record(seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(RECORD_HEADER_LEN + payload.len());
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&record_crc(seq, payload).to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(payload);
    buf
}

/// Appends records to the newest WAL file. Callers serialise access (the collection's writer
/// mutex), because log order must equal apply order.
#[derive(Debug)]
pub(crate) struct WalWriter {
    dir: PathBuf,
    file: Arc<File>,
    path: PathBuf,
    file_no: u64,
    len: u64,
    last_seq: u64,
    rotate_bytes: u64,
    durability: Arc<Durability>,
    /// Older files and the last sequence number each holds, oldest first.
    sealed: Vec<(u64, u64)>,
    /// Recoveries of this log so far (see [`Ticket`]).
    epoch: u64,
}

/// Where the last successful sync left the log: records up to `seq` are durable, and the
/// durable bytes end at offset `len` of file `file_no`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DurablePoint {
    pub(crate) seq: u64,
    pub(crate) file_no: u64,
    pub(crate) len: u64,
}

/// A record's claim on durability: its sequence number and the log epoch it was appended in.
/// Recovery reuses the sequence numbers it drops, so a number alone cannot tell a dropped
/// record from the one that replaced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    seq: u64,
    epoch: u64,
}

impl Ticket {
    /// The record's sequence number.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }
}

/// What a syncer captured under the writer lock: the file and how far it reaches.
struct SyncTarget {
    file: Arc<File>,
    path: PathBuf,
    point: DurablePoint,
    epoch: u64,
}

impl WalWriter {
    /// Sequence number of the newest record (0 when the log has never held one).
    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The group-commit tracker for this log.
    pub(crate) fn durability(&self) -> &Arc<Durability> {
        &self.durability
    }

    /// The ticket of the newest record, for [`Durability::wait`].
    pub(crate) fn ticket(&self) -> Ticket {
        Ticket {
            seq: self.last_seq,
            epoch: self.epoch,
        }
    }

    fn sync_target(&self) -> SyncTarget {
        SyncTarget {
            file: Arc::clone(&self.file),
            path: self.path.clone(),
            point: DurablePoint {
                seq: self.last_seq,
                file_no: self.file_no,
                len: self.len,
            },
            epoch: self.epoch,
        }
    }

    /// Makes this writer (just reopened by [`recover`] after [`cut_back`]) continue the log of
    /// `durability` in `epoch`, in a fresh file: the file that saw the failed sync is never
    /// written again. Returns the new durable point (everything written so far).
    pub(crate) fn continue_after_recovery(
        &mut self,
        durability: Arc<Durability>,
        epoch: u64,
    ) -> Result<DurablePoint, EngineError> {
        self.start_next_file()?;
        self.durability = durability;
        self.epoch = epoch;
        Ok(self.sync_target().point)
    }

    /// Writes one record and returns its sequence number. Not yet durable: see
    /// [`Durability::wait`]. On failure nothing of the record remains in the file.
    pub(crate) fn append(&mut self, payload: &[u8]) -> Result<u64, EngineError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(EngineError::Input(
                crate::types::InputError::ValueTooLarge {
                    len: payload.len(),
                    max: MAX_PAYLOAD,
                },
            ));
        }
        let record_len = (RECORD_HEADER_LEN + payload.len()) as u64;
        if self.len > FILE_HEADER_LEN && self.len + record_len > self.rotate_bytes {
            self.rotate()?;
        }
        let seq = self.last_seq + 1;
        let buf = encode_record(seq, payload);
        if let Err(e) = write_record(&self.file, &buf) {
            // Cut whatever part of the record reached the file, so the next append does not
            // land behind garbage. If even that fails, later records would follow a bad one:
            // refuse writes until a reopen lets recovery handle the tail.
            if let Err(e2) = self.file.set_len(self.len) {
                self.durability.poison(format!(
                    "truncating {} after a failed append: {e2}",
                    self.path.display()
                ));
            }
            return Err(EngineError::io("append to WAL", &self.path, e));
        }
        self.len += record_len;
        self.last_seq = seq;
        Ok(seq)
    }

    /// Makes everything written to the current file durable, then starts the next file. A flush
    /// rotates first so that the files before the current one hold exactly what it covers.
    pub(crate) fn rotate(&mut self) -> Result<(), EngineError> {
        if self.len == FILE_HEADER_LEN {
            return Ok(());
        }
        // Through the tracker, not directly: a sync after a failed one must not run (fsync-gate).
        self.durability.sync_through(&self.sync_target())?;
        self.start_next_file()
    }

    /// Seals the current file (its last record is the log's last) and appends to a new one.
    fn start_next_file(&mut self) -> Result<(), EngineError> {
        let no = self.file_no + 1;
        let (file, path) = create_file(&self.dir, no)?;
        self.sealed.push((self.file_no, self.last_seq));
        self.file = Arc::new(file);
        self.path = path;
        self.file_no = no;
        self.len = FILE_HEADER_LEN;
        Ok(())
    }
}

impl WalWriter {
    /// Deletes sealed files whose records are all at or below `covered` (a flush made them
    /// redundant). Failing to delete is harmless — replay skips covered records — so errors are
    /// only logged.
    pub(crate) fn remove_covered(&mut self, covered: u64) {
        let mut removed = false;
        self.sealed.retain(|&(no, last)| {
            if last > covered {
                return true;
            }
            let path = self.dir.join(file_name(no));
            match fs::remove_file(&path) {
                Ok(()) => removed = true,
                Err(e) => tracing::warn!(file = %path.display(), error = %e, "could not remove a flushed WAL file"),
            }
            false
        });
        if removed {
            let _ = sync_dir(&self.dir);
        }
    }

    /// Bytes in the current WAL file (for metrics).
    pub(crate) fn current_file_bytes(&self) -> u64 {
        self.len
    }
}

fn write_record(mut file: &File, buf: &[u8]) -> io::Result<()> {
    fail::fail_point!("wal::append", |arg| {
        // `torn`: write half the record and die, as a crash mid-write would leave it.
        if arg.as_deref() == Some("torn") {
            let _ = file.write_all(&buf[..buf.len() / 2]);
            std::process::abort();
        }
        if arg.as_deref() == Some("abort") {
            std::process::abort();
        }
        Err(io::Error::other("failpoint wal::append"))
    });
    file.write_all(buf)
}

fn sync_file(file: &File) -> io::Result<()> {
    crash_point!("wal::sync", Err(io::Error::other("failpoint wal::sync")));
    file.sync_data()
}

fn create_file(dir: &Path, no: u64) -> Result<(File, PathBuf), EngineError> {
    let path = dir.join(file_name(no));
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| EngineError::io("create WAL file", &path, e))?;
    crash_point!(
        "wal::rotate",
        Err(EngineError::Internal("failpoint wal::rotate".into()))
    );
    // A file left by a crash during an earlier creation may hold a partial header.
    file.set_len(0)
        .and_then(|_| file.write_all(&file_header()))
        .and_then(|_| file.sync_all())
        .map_err(|e| EngineError::io("initialise WAL file", &path, e))?;
    sync_dir(dir)?;
    Ok((file, path))
}

#[derive(Debug, Default)]
struct SyncState {
    durable: DurablePoint,
    syncing: bool,
    failed: Option<String>,
    /// Recoveries so far; tickets from an older epoch are settled by `cuts`.
    epoch: u64,
    /// `cuts[e]`: the last record the recovery that ended epoch `e` kept, and why it ran.
    cuts: Vec<(u64, String)>,
}

/// Group commit: tracks the highest durable sequence number and elects one syncing writer at
/// a time. A failed sync poisons the log (fsync-gate: after a failed `fdatasync` the kernel may
/// have dropped the dirty pages, so retrying could report success for lost data) until
/// [`Durability::recover_with`] has cut the records in doubt away.
#[derive(Debug, Default)]
pub(crate) struct Durability {
    state: Mutex<SyncState>,
    cv: Condvar,
    /// Held around every fsync of the log and around recovery. Serialising them means no sync
    /// starts after a failed one (it could falsely succeed) and no sync of a file recovery has
    /// replaced records its success.
    sync_lock: Mutex<()>,
}

impl Durability {
    fn with_durable(point: DurablePoint) -> Durability {
        Durability {
            state: Mutex::new(SyncState {
                durable: point,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Syncs `target`'s file and records how far it is durable; a failure poisons the log.
    /// Refuses (without syncing) once the log is poisoned.
    fn sync_through(&self, target: &SyncTarget) -> Result<(), EngineError> {
        let _one = self.sync_lock.lock();
        {
            let st = self.state.lock();
            if let Some(why) = &st.failed {
                return Err(EngineError::Poisoned(why.clone()));
            }
            if st.epoch != target.epoch {
                // Captured before a recovery replaced the file: nothing to record.
                return Ok(());
            }
        }
        let result = sync_file(&target.file);
        let mut st = self.state.lock();
        match &result {
            Ok(()) if target.point.seq >= st.durable.seq => st.durable = target.point,
            Ok(()) => {}
            Err(e) => {
                tracing::error!(
                    file = %target.path.display(),
                    error = %e,
                    durable_seq = st.durable.seq,
                    "WAL fdatasync failed; writes are refused until the log is cut back to its last durable record"
                );
                st.failed
                    .get_or_insert(format!("fdatasync {}: {e}", target.path.display()));
            }
        }
        self.cv.notify_all();
        result.map_err(|e| EngineError::io("fsync WAL", &target.path, e))
    }

    /// Recovers a poisoned log: runs `f(durable point, next epoch)` — which must cut the files
    /// back to that point and reopen the log in the next epoch, returning the new durable
    /// point — with no sync in flight, then accepts writes again. Waiters on dropped records
    /// get [`EngineError::SyncFailed`]. `Ok(None)` when the log was not poisoned; when `f`
    /// fails the log stays poisoned.
    pub(crate) fn recover_with<T>(
        &self,
        f: impl FnOnce(DurablePoint, u64) -> Result<(T, DurablePoint), EngineError>,
    ) -> Result<Option<T>, EngineError> {
        let _one = self.sync_lock.lock();
        let (point, epoch, why) = {
            let st = self.state.lock();
            match &st.failed {
                None => return Ok(None),
                Some(why) => (st.durable, st.epoch, why.clone()),
            }
        };
        let (out, now) = f(point, epoch + 1)?;
        let mut st = self.state.lock();
        debug_assert_eq!(st.cuts.len() as u64, epoch);
        st.cuts.push((point.seq, why));
        st.epoch = epoch + 1;
        st.durable = now;
        st.failed = None;
        self.cv.notify_all();
        Ok(Some(out))
    }

    /// Marks the log unusable for writes; reads are unaffected.
    pub(crate) fn poison(&self, why: String) {
        let mut st = self.state.lock();
        st.failed.get_or_insert(why);
        self.cv.notify_all();
    }

    /// Why the log refuses writes, if it does.
    pub(crate) fn failure(&self) -> Option<String> {
        self.state.lock().failed.clone()
    }

    /// Returns once the record of `ticket` is durable. Fails with `Poisoned` when a sync failed
    /// before covering it (the record is in doubt until a recovery), and with `SyncFailed` once
    /// a recovery dropped it. The caller must not hold `writer`'s lock.
    pub(crate) fn wait(
        &self,
        ticket: Ticket,
        writer: &Mutex<WalWriter>,
    ) -> Result<(), EngineError> {
        let mut st = self.state.lock();
        loop {
            if st.epoch != ticket.epoch {
                // A recovery ran since the record was appended: it kept records up to its cut.
                return match st.cuts.get(ticket.epoch as usize) {
                    Some((kept, _)) if ticket.seq <= *kept => Ok(()),
                    Some((_, why)) => Err(EngineError::SyncFailed(why.clone())),
                    None => Err(EngineError::Internal(format!(
                        "WAL ticket from unknown epoch {}",
                        ticket.epoch
                    ))),
                };
            }
            if st.durable.seq >= ticket.seq {
                return Ok(());
            }
            if let Some(why) = &st.failed {
                return Err(EngineError::Poisoned(why.clone()));
            }
            if st.syncing {
                self.cv.wait(&mut st);
                continue;
            }
            st.syncing = true;
            drop(st);
            // Everything appended up to now rides on this one sync. Its outcome is recorded by
            // `sync_through`; the loop reads it from the state.
            let target = writer.lock().sync_target();
            let _ = self.sync_through(&target);
            st = self.state.lock();
            st.syncing = false;
            self.cv.notify_all();
        }
    }
}

/// Recovery after a failed sync, first step: cuts every WAL file in `dir` back to `point` (the
/// last successful sync) — the file holding it to its durable length, later files to their
/// bare header — and fsyncs them and the folder. Nothing cut was acknowledged. Idempotent, so
/// a failed attempt is simply retried.
pub(crate) fn cut_back(dir: &Path, point: DurablePoint) -> Result<(), EngineError> {
    crash_point!(
        "wal::cut_back",
        Err(EngineError::Internal("failpoint wal::cut_back".into()))
    );
    for no in list_files(dir)? {
        let keep = match no.cmp(&point.file_no) {
            std::cmp::Ordering::Less => continue,
            std::cmp::Ordering::Equal => point.len,
            std::cmp::Ordering::Greater => FILE_HEADER_LEN,
        };
        let path = dir.join(file_name(no));
        // A fresh descriptor: the one that saw the failed sync has its error consumed.
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| EngineError::io("open WAL to cut it back", &path, e))?;
        let len = file
            .metadata()
            .map_err(|e| EngineError::io("stat WAL", &path, e))?
            .len();
        if len < keep {
            if no == point.file_no {
                return Err(EngineError::Corrupt {
                    file: path,
                    offset: len,
                    reason: format!("WAL file ends before its durable length {keep}"),
                });
            }
            // A later file whose creation failed part way: replay treats it as a torn header.
            continue;
        }
        if len > keep {
            file.set_len(keep)
                .map_err(|e| EngineError::io("cut back WAL", &path, e))?;
        }
        file.sync_all()
            .map_err(|e| EngineError::io("fsync cut-back WAL", &path, e))?;
    }
    Ok(sync_dir(dir)?)
}

/// Opens the log in `dir` (creating it when absent), calling `replay(seq, payload, file,
/// offset)` for every record in order, and returns the writer positioned after the last one.
/// `covered` is the highest sequence number a flush already made durable elsewhere: records up to
/// it are skipped, and numbering continues after it even when no file is left.
pub(crate) fn recover(
    dir: &Path,
    rotate_bytes: u64,
    covered: u64,
    mut replay: impl FnMut(u64, &[u8], &Path, u64) -> Result<(), EngineError>,
) -> Result<WalWriter, EngineError> {
    if !dir.exists() {
        // The folder's own name must be durable in its parent before files in it matter.
        crate::fsutil::create_dir_durable(dir)?;
    }
    let mut numbers = list_files(dir)?;
    numbers.sort_unstable();
    let mut last_seq = covered;
    // The previous record's sequence number, for the gap check (independent of `covered`).
    let mut prev: Option<u64> = None;
    let count = numbers.len();
    let mut tail: Option<(u64, PathBuf, u64)> = None;
    let mut sealed: Vec<(u64, u64)> = Vec::new();
    for (i, no) in numbers.iter().copied().enumerate() {
        let is_last = i + 1 == count;
        let path = dir.join(file_name(no));
        let data = fs::read(&path).map_err(|e| EngineError::io("read WAL", &path, e))?;
        let header_ok = data.len() >= FILE_HEADER_LEN as usize && data[..16] == file_header();
        if !header_ok {
            let torn_header = is_last && data.len() <= FILE_HEADER_LEN as usize;
            if torn_header {
                // Crash while creating the file: nothing in it was ever acknowledged.
                tail = Some((no, path, 0));
                break;
            }
            if data.len() >= 12 && &data[..8] == FILE_MAGIC {
                let found = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
                if found != FORMAT_VERSION {
                    return Err(EngineError::Version {
                        path,
                        found,
                        expected: FORMAT_VERSION,
                    });
                }
            }
            return Err(EngineError::Corrupt {
                file: path,
                offset: 0,
                reason: "bad WAL file header".into(),
            });
        }
        let mut off = FILE_HEADER_LEN as usize;
        loop {
            if off == data.len() {
                break;
            }
            match parse_record(&data, off) {
                Some((seq, payload, next)) => {
                    if let Some(p) = prev.filter(|&p| seq != p + 1) {
                        return Err(EngineError::Corrupt {
                            file: path,
                            offset: off as u64,
                            reason: format!("sequence {seq} follows {p}"),
                        });
                    }
                    fail::fail_point!("wal::recover", |_| Err(EngineError::Corrupt {
                        file: path.clone(),
                        offset: off as u64,
                        reason: "failpoint wal::recover".into(),
                    }));
                    if seq > covered {
                        replay(seq, payload, &path, off as u64)?;
                    }
                    prev = Some(seq);
                    last_seq = last_seq.max(seq);
                    off = next;
                }
                None => {
                    let later_valid = find_valid_record(&data, off + 1, prev.unwrap_or(0));
                    if !is_last || later_valid.is_some() {
                        return Err(EngineError::Corrupt {
                            file: path,
                            offset: off as u64,
                            reason: "record fails its checksum and valid records follow it".into(),
                        });
                    }
                    tracing::warn!(
                        file = %path.display(),
                        offset = off,
                        dropped_bytes = data.len() - off,
                        "truncating torn WAL tail (an unacknowledged write interrupted by a crash)"
                    );
                    break;
                }
            }
        }
        if is_last {
            tail = Some((no, path, off as u64));
        } else {
            sealed.push((no, last_seq));
        }
    }

    match tail {
        Some((no, path, len)) if len >= FILE_HEADER_LEN => {
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .open(&path)
                .map_err(|e| EngineError::io("open WAL", &path, e))?;
            let current = file
                .metadata()
                .map_err(|e| EngineError::io("stat WAL", &path, e))?
                .len();
            if current != len {
                fail::fail_point!("wal::truncate_tail");
                file.set_len(len)
                    .and_then(|_| file.sync_all())
                    .map_err(|e| EngineError::io("truncate WAL tail", &path, e))?;
            }
            let point = DurablePoint {
                seq: last_seq,
                file_no: no,
                len,
            };
            Ok(WalWriter {
                dir: dir.to_path_buf(),
                file: Arc::new(file),
                path,
                file_no: no,
                len,
                last_seq,
                rotate_bytes,
                durability: Arc::new(Durability::with_durable(point)),
                sealed,
                epoch: 0,
            })
        }
        other => {
            let no = other.map(|(no, _, _)| no).unwrap_or(1);
            let (file, path) = create_file(dir, no)?;
            let point = DurablePoint {
                seq: last_seq,
                file_no: no,
                len: FILE_HEADER_LEN,
            };
            Ok(WalWriter {
                dir: dir.to_path_buf(),
                file: Arc::new(file),
                path,
                file_no: no,
                len: FILE_HEADER_LEN,
                last_seq,
                rotate_bytes,
                durability: Arc::new(Durability::with_durable(point)),
                sealed,
                epoch: 0,
            })
        }
    }
}

fn list_files(dir: &Path) -> Result<Vec<u64>, EngineError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| EngineError::io("list WAL", dir, e))? {
        let entry = entry.map_err(|e| EngineError::io("list WAL", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(num) = name
            .strip_suffix(".log")
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push(num);
        }
    }
    Ok(out)
}

/// Parses the record at `off`: `(seq, payload, next offset)` when its header and CRC are good.
fn parse_record(data: &[u8], off: usize) -> Option<(u64, &[u8], usize)> {
    let header = data.get(off..off.checked_add(RECORD_HEADER_LEN)?)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let seq = u64::from_le_bytes(header[8..16].try_into().ok()?);
    if len > MAX_PAYLOAD {
        return None;
    }
    let start = off + RECORD_HEADER_LEN;
    let payload = data.get(start..start.checked_add(len)?)?;
    (record_crc(seq, payload) == crc).then_some((seq, payload, start + len))
}

/// Looks for any valid record at or after `from` claiming a sequence number after `last_seq`:
/// its presence turns a bad record into corruption rather than a torn tail.
fn find_valid_record(data: &[u8], from: usize, last_seq: u64) -> Option<usize> {
    let end = data.len().checked_sub(RECORD_HEADER_LEN)?;
    (from..=end).find(|&off| {
        let seq = u64::from_le_bytes(data[off + 8..off + 16].try_into().unwrap_or([0; 8]));
        seq > last_seq && seq <= last_seq + SEQ_SCAN_WINDOW && parse_record(data, off).is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Replayed = Vec<(u64, Vec<u8>)>;

    fn collect(dir: &Path) -> Result<(WalWriter, Replayed), EngineError> {
        let mut got = Vec::new();
        let w = recover(dir, DEFAULT_ROTATE_BYTES, 0, |seq, p, _, _| {
            got.push((seq, p.to_vec()));
            Ok(())
        })?;
        Ok((w, got))
    }

    fn write_n(dir: &Path, n: usize, rotate: u64) -> WalWriter {
        let mut w = recover(dir, rotate, 0, |_, _, _, _| Ok(())).unwrap();
        for i in 0..n {
            w.append(format!("record-{i}").as_bytes()).unwrap();
            let ticket = w.ticket();
            let lock = Mutex::new(w);
            let d = Arc::clone(lock.lock().durability());
            d.wait(ticket, &lock).unwrap();
            w = lock.into_inner();
        }
        w
    }

    #[test]
    fn round_trip_across_rotation() {
        let dir = tempfile::tempdir().unwrap();
        drop(write_n(dir.path(), 50, 200));
        assert!(
            list_files(dir.path()).unwrap().len() > 5,
            "rotation should create several files"
        );
        let (w, got) = collect(dir.path()).unwrap();
        assert_eq!(got.len(), 50);
        for (i, (seq, p)) in got.iter().enumerate() {
            assert_eq!(*seq, i as u64 + 1);
            assert_eq!(p, format!("record-{i}").as_bytes());
        }
        assert_eq!(w.last_seq(), 50);
    }

    fn last_file(dir: &Path) -> PathBuf {
        let mut n = list_files(dir).unwrap();
        n.sort();
        dir.join(file_name(*n.last().unwrap()))
    }

    #[test]
    fn torn_tail_is_truncated_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        drop(write_n(dir.path(), 10, DEFAULT_ROTATE_BYTES));
        let path = last_file(dir.path());
        let full = fs::metadata(&path).unwrap().len();
        // Cut the last record in half.
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(full - 5)
            .unwrap();
        let (mut w, got) = collect(dir.path()).unwrap();
        assert_eq!(got.len(), 9);
        assert_eq!(w.append(b"after").unwrap(), 10);
        drop(w);
        let (_, got) = collect(dir.path()).unwrap();
        assert_eq!(got.len(), 10);
        assert_eq!(got[9].1, b"after");
    }

    #[test]
    fn garbage_tail_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        drop(write_n(dir.path(), 3, DEFAULT_ROTATE_BYTES));
        let path = last_file(dir.path());
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0u8; 100]).unwrap();
        f.write_all(&[0xAB; 77]).unwrap();
        let (_, got) = collect(dir.path()).unwrap();
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn bad_record_followed_by_good_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        drop(write_n(dir.path(), 5, DEFAULT_ROTATE_BYTES));
        let path = last_file(dir.path());
        let mut data = fs::read(&path).unwrap();
        // Flip a payload byte of the second record.
        let second = FILE_HEADER_LEN as usize + RECORD_HEADER_LEN + "record-0".len();
        data[second + RECORD_HEADER_LEN + 2] ^= 0xFF;
        fs::write(&path, &data).unwrap();
        match collect(dir.path()) {
            Err(EngineError::Corrupt { file, offset, .. }) => {
                assert_eq!(file, path);
                assert_eq!(offset, second as u64);
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        // The file was not truncated by the failed open.
        assert_eq!(fs::read(&path).unwrap(), data);
    }

    #[test]
    fn bad_record_in_older_file_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        drop(write_n(dir.path(), 20, 120));
        let mut n = list_files(dir.path()).unwrap();
        n.sort();
        let first = dir.path().join(file_name(n[0]));
        let mut data = fs::read(&first).unwrap();
        let last = data.len() - 1;
        data[last] ^= 1;
        fs::write(&first, &data).unwrap();
        assert!(matches!(
            collect(dir.path()),
            Err(EngineError::Corrupt { .. })
        ));
    }

    #[test]
    fn torn_file_header_is_reinitialised() {
        let dir = tempfile::tempdir().unwrap();
        drop(write_n(dir.path(), 4, DEFAULT_ROTATE_BYTES));
        fs::write(dir.path().join(file_name(2)), b"VECT").unwrap();
        let (mut w, got) = collect(dir.path()).unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(w.append(b"x").unwrap(), 5);
    }

    #[test]
    fn unknown_version_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        drop(write_n(dir.path(), 1, DEFAULT_ROTATE_BYTES));
        let path = last_file(dir.path());
        let mut data = fs::read(&path).unwrap();
        data[8] = 9;
        fs::write(&path, &data).unwrap();
        assert!(matches!(
            collect(dir.path()),
            Err(EngineError::Version { found: 9, .. })
        ));
    }

    #[test]
    fn group_commit_from_many_threads() {
        let dir = tempfile::tempdir().unwrap();
        let w = recover(dir.path(), DEFAULT_ROTATE_BYTES, 0, |_, _, _, _| Ok(())).unwrap();
        let d = Arc::clone(w.durability());
        let lock = Arc::new(Mutex::new(w));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let (lock, d) = (Arc::clone(&lock), Arc::clone(&d));
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let ticket = {
                            let mut w = lock.lock();
                            w.append(format!("{t}-{i}").as_bytes()).unwrap();
                            w.ticket()
                        };
                        d.wait(ticket, &lock).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        drop(lock);
        let (_, got) = collect(dir.path()).unwrap();
        assert_eq!(got.len(), 200);
    }
}
