//! What the process and its machine look like from Linux's `/proc` and `/sys` (resident
//! memory, the memory limit, mapped files' residency) and the data volume's space. Elsewhere
//! the readers find nothing and report nothing.

use std::path::{Path, PathBuf};

/// Resident bytes of the process by kind: `anon` (heap: what counts against the machine) and
/// `file` (mapped pages the kernel can drop), from `/proc/self/status`; a kind that cannot be
/// read is left out.
pub fn resident_by_kind() -> Vec<(&'static str, i64)> {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return Vec::new();
    };
    [("RssAnon:", "anon"), ("RssFile:", "file")]
        .into_iter()
        .filter_map(|(field, kind)| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
                .map(|kib| (kind, kib.saturating_mul(1024)))
        })
        .collect()
}

/// Memory available to the process: `MemTotal`, or the cgroup v2 limit when lower.
pub fn memory_limit() -> Option<i64> {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            .map(|kib| kib.saturating_mul(1024))
    });
    // cgroup v2 limit ("max" when unlimited) — containers see the host's MemTotal.
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok());
    [total, cgroup].into_iter().flatten().min()
}

/// Size of the file system holding `dir`, and the space available to vectord on it, in bytes.
pub fn volume_space(dir: &Path) -> Option<(u64, u64)> {
    let st = rustix::fs::statvfs(dir).ok()?;
    let block = st.f_frsize.max(1);
    Some((
        st.f_blocks.saturating_mul(block),
        st.f_bavail.saturating_mul(block),
    ))
}

/// Resident bytes of the mappings of files under each of `dirs` (Linux `/proc/self/smaps`;
/// zeros elsewhere). Mapped bytes say what a collection could occupy; this says what the
/// kernel keeps in memory now, which is what a memory alert should compare.
pub fn resident_bytes_under(dirs: &[&Path]) -> Vec<u64> {
    let mut out = vec![0u64; dirs.len()];
    // smaps names files by absolute, resolved path; the data folder may be given relative.
    let dirs: Vec<PathBuf> = dirs
        .iter()
        .map(|d| d.canonicalize().unwrap_or_else(|_| d.to_path_buf()))
        .collect();
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return out;
    };
    let mut current: Option<usize> = None;
    for line in smaps.lines() {
        if let Some(kib) = line.strip_prefix("Rss:") {
            if let (Some(i), Ok(kib)) = (
                current,
                kib.trim().trim_end_matches("kB").trim().parse::<u64>(),
            ) {
                out[i] = out[i].saturating_add(kib.saturating_mul(1024));
            }
            continue;
        }
        // A mapping header: `start-end perms offset dev inode [path]`; field lines have a
        // `Name:` first token instead.
        let mut fields = line.split_whitespace();
        let is_header = fields
            .next()
            .is_some_and(|range| range.contains('-') && !range.ends_with(':'));
        if !is_header {
            continue;
        }
        // The path is the rest of the line from its first `/` (it may contain spaces; the
        // fields before it never contain a `/`).
        // Files unlinked by compaction stay mapped until their last reader lets go; they are
        // not the collection's current footprint.
        let path = line
            .find('/')
            .map(|i| &line[i..])
            .filter(|p| !p.ends_with(" (deleted)"))
            .map(Path::new);
        current = path.and_then(|p| dirs.iter().position(|d| p.starts_with(d)));
    }
    out
}
