//! Compaction: the size-tiered policy that picks segments to merge, the process-wide cap on
//! running merges, and the merge itself (extending the largest clean segment's graph, or
//! rebuilding one) swapped in atomically while reads and writes go on.
//!
//! When: the pool turn that flushed asks the policy ([`plan_compaction`]: a segment more than
//! 30 % dead alone; everything once the others hold a quarter of the largest; past
//! [`MAX_SEGMENTS`] the smaller ones), and so does one turn after the catalog opens the
//! collection (`Collection::request_compaction_check`: merges a crash loop or a stop left
//! undone). A merge runs on a `vectord-compact` thread of its own, so a long one never holds a
//! pool worker; one per collection, [`MAX_RUNNING_COMPACTIONS`] in the process, a put-off one
//! asked for again after [`COMPACTION_RETRY`]. `Collection::compact` (and the purge) merges
//! everything and drops every dead row.
//!
//! Swap: the merged segment is written, then under the writer lock the inputs are swapped out
//! by id (segments flushed meanwhile stay), rows deleted during the merge are carried over as
//! tombstones through a row map, the MANIFEST is replaced, and only then are the input folders
//! removed (readers holding their mappings keep reading them). A log recovery during the merge
//! abandons it unpublished: the tombstones it read may be gone.

use std::fs;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::flush::release_free_heap;
use super::manifest::SEGMENTS_DIR;
use super::Inner;
use crate::engine::bitset::Bitset;
use crate::engine::memtable::on_build_pool;
use crate::engine::segment::records::RowIn;
use crate::engine::segment::Segment;
use crate::engine::EngineError;
use crate::index::{quant, BuildParams, GraphBuilder};
use crate::types::Space;

/// Compaction's lock, thread and counters.
#[derive(Debug, Default)]
pub(super) struct Compactions {
    /// One compaction at a time.
    pub(super) one: Mutex<()>,
    /// The running (or last) compaction thread, joined on drop.
    pub(super) thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Compactions that rewrote segments since open.
    pub(super) done: AtomicU64,
    /// Their total duration in microseconds.
    pub(super) micros: AtomicU64,
}

/// Segments beyond which the smaller ones are merged even while small next to the largest
/// (each segment costs one graph search per query).
pub(super) const MAX_SEGMENTS: usize = 4;

/// The smaller segments are merged into the largest once they hold this fraction of its rows
/// (1/4): each merge grows the base by ≥ 25%, so a row is rewritten O(log N) times.
pub(super) const MERGE_FRACTION: usize = 4;

/// Which segments (indices into `segs`, given as `(rows, dead)`) the background should merge
/// now, if any. Size-tiered: a segment more than 30% dead (and > 1,000 dead rows) is rewritten
/// to drop them; otherwise all segments are merged into the largest once the others hold a
/// quarter of its rows; and past [`MAX_SEGMENTS`] the smaller ones are merged among
/// themselves. Merges extend the base's graph, so their cost is mostly the smaller inputs.
pub(crate) fn plan_compaction(segs: &[(usize, usize)]) -> Option<Vec<usize>> {
    if let Some(i) = segs
        .iter()
        .position(|&(rows, dead)| dead > 1000 && dead * 10 > rows * 3)
    {
        return Some(vec![i]);
    }
    if segs.len() < 2 {
        return None;
    }
    let live = |i: usize| segs[i].0 - segs[i].1.min(segs[i].0);
    let largest = (0..segs.len()).max_by_key(|&i| (live(i), std::cmp::Reverse(i)))?;
    let others: usize = (0..segs.len()).filter(|&i| i != largest).map(live).sum();
    if others * MERGE_FRACTION >= live(largest) {
        return Some((0..segs.len()).collect());
    }
    if segs.len() > MAX_SEGMENTS {
        return Some((0..segs.len()).filter(|&i| i != largest).collect());
    }
    None
}

/// Compactions running at once in the process. Each holds a merged graph's codes in memory
/// and competes for the build pool; a restart of a server whose collections all need a merge
/// (after a crash loop) must not start a thousand of them together.
pub(super) const MAX_RUNNING_COMPACTIONS: usize = 2;

pub(super) static RUNNING_COMPACTIONS: AtomicUsize = AtomicUsize::new(0);

/// When a compaction put off by [`MAX_RUNNING_COMPACTIONS`] is asked for again.
pub(super) const COMPACTION_RETRY: Duration = Duration::from_secs(5);

/// Gives a running-compaction slot back when the compaction thread ends (or fails to start).
pub(super) struct CompactionSlot;

impl Drop for CompactionSlot {
    fn drop(&mut self) {
        RUNNING_COMPACTIONS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs a compaction on its own thread (it can take a while: a full graph rebuild), unless one
/// is already running for this collection. Returns `false` when [`MAX_RUNNING_COMPACTIONS`]
/// run in the process: the caller asks again later.
pub(super) fn start_compaction(inner: &Arc<Inner>, plan: Vec<u64>) -> bool {
    let mut slot = inner.compactions.thread.lock();
    if slot.as_ref().is_some_and(|h| !h.is_finished()) {
        return true;
    }
    if let Some(done) = slot.take() {
        let _ = done.join();
    }
    if RUNNING_COMPACTIONS
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < MAX_RUNNING_COMPACTIONS).then_some(n + 1)
        })
        .is_err()
    {
        return false;
    }
    let running = CompactionSlot;
    let for_thread = Arc::clone(inner);
    *slot = std::thread::Builder::new()
        .name("vectord-compact".into())
        .spawn(move || {
            let _running = running;
            let _one = for_thread.compactions.one.lock();
            if let Err(e) = for_thread.compact(&for_thread.shutdown, Some(&plan)) {
                tracing::error!(collection = %for_thread.dir.display(), error = %e, "compaction failed; segments left as they were");
            }
        })
        .map_err(|e| tracing::error!(error = %e, "could not start a compaction thread"))
        .ok();
    true
}

impl Inner {
    /// Merges segments into one and swaps it in atomically; reads and writes continue
    /// meanwhile, and rows deleted or replaced during the merge are tombstoned in the result.
    /// `plan: None` merges every segment and drops every dead row (what [`Collection::compact`]
    /// promises); `Some(ids)` merges those segments (the background policy,
    /// [`plan_compaction`]). When one input is a clean base — a graph built with today's `M`,
    /// and no dead rows (or, for a planned merge, under 10%, carried over as tombstones) —
    /// its graph is extended with the other inputs' rows instead of rebuilt: a copy plus the
    /// other rows' inserts. Returns whether anything was rewritten.
    pub(super) fn compact(
        &self,
        shutdown: &AtomicBool,
        plan: Option<&[u64]>,
    ) -> Result<bool, EngineError> {
        let r = self.compact_once(shutdown, plan);
        // The merge's graph builder and row lists were freed whatever the outcome.
        release_free_heap();
        r
    }

    pub(super) fn compact_once(
        &self,
        shutdown: &AtomicBool,
        plan: Option<&[u64]>,
    ) -> Result<bool, EngineError> {
        let (inputs, space, dim, build, generation) = {
            let st = self.state.read();
            let generation = self.recovery.generation.load(Ordering::Relaxed);
            let inputs: Vec<(Arc<Segment>, Bitset)> = st
                .segments()
                .iter()
                .filter(|s| plan.is_none_or(|ids| ids.contains(&s.seg.id())))
                .map(|s| (Arc::clone(&s.seg), s.dead.clone()))
                .collect();
            (
                inputs,
                st.space(),
                st.dimension(),
                st.build_params(),
                generation,
            )
        };
        let dead: usize = inputs.iter().map(|(_, d)| d.count()).sum();
        let Some(dim) = dim else { return Ok(false) };
        if inputs.len() < 2 && dead == 0 {
            return Ok(false);
        }
        let started = std::time::Instant::now();
        // The base whose graph is extended: the largest input that qualifies.
        let max_dead = |rows: usize| if plan.is_some() { rows / 10 } else { 0 };
        let base = inputs
            .iter()
            .enumerate()
            .filter(|(_, (seg, d))| d.count() <= max_dead(seg.rows()))
            .max_by_key(|(_, (seg, _))| seg.rows())
            .map(|(i, _)| i);
        let base_builder = match base {
            Some(i) => inputs[i].0.extend_graph(
                space,
                BuildParams {
                    capacity_hint: inputs.iter().map(|(s, _)| s.rows()).sum(),
                    ..build
                },
            )?,
            None => None,
        };
        let base = base.filter(|_| base_builder.is_some());
        // The new segment's rows: the base's rows as they are (dead ones too, so its graph's
        // point ids stay valid; they stay tombstoned), then every other input's live rows in
        // first-insert order. A later row for an id wins in a segment's id index, so a live
        // version appended after a carried dead one is the one found.
        let mut live: Vec<(u64, usize, u32)> = Vec::new();
        if let Some(b) = base {
            for r in 0..inputs[b].0.rows() as u32 {
                live.push((inputs[b].0.first_seq(r)?, b, r));
            }
        }
        let kept = live.len();
        for (i, (seg, dead)) in inputs.iter().enumerate() {
            if Some(i) == base {
                continue;
            }
            for r in 0..seg.rows() as u32 {
                if !dead.get(r) {
                    live.push((seg.first_seq(r)?, i, r));
                }
            }
        }
        live[kept..].sort_unstable();
        let mut map: Vec<Vec<u32>> = inputs
            .iter()
            .map(|(s, _)| vec![u32::MAX; s.rows()])
            .collect();
        for (new, &(_, i, r)) in live.iter().enumerate() {
            map[i][r as usize] = new as u32;
        }
        let seg_id = {
            let mut m = self.manifest.lock();
            m.next_segment_id += 1;
            m.next_segment_id - 1
        };
        let new_seg = if live.is_empty() {
            None
        } else {
            let builder = match base_builder {
                Some(b) => b,
                None => GraphBuilder::with_coder(
                    mean_coder(
                        space,
                        dim,
                        live.iter().map(|&(_, i, r)| inputs[i].0.vector(r)),
                    )?,
                    dim,
                    BuildParams {
                        capacity_hint: live.len(),
                        ..build
                    },
                )?,
            };
            for (c, chunk) in live[kept..].chunks(1024).enumerate() {
                if shutdown.load(Ordering::Relaxed) {
                    return Ok(false);
                }
                let items = chunk
                    .iter()
                    .enumerate()
                    .map(|(j, &(_, i, r))| {
                        Ok((inputs[i].0.vector(r)?, (kept + c * 1024 + j) as u32))
                    })
                    .collect::<Result<Vec<_>, EngineError>>()?;
                on_build_pool(|| builder.insert_batch(&items))?;
            }
            let fields = live
                .iter()
                .map(|&(_, i, r)| inputs[i].0.fields(r))
                .collect::<Result<Vec<_>, _>>()?;
            let ids = live
                .iter()
                .map(|&(_, i, r)| inputs[i].0.id_of(r))
                .collect::<Result<Vec<_>, _>>()?;
            let rows: Vec<RowIn> = live
                .iter()
                .zip(ids.iter().zip(&fields))
                .map(|(&(first_seq, _, _), (id, fields))| RowIn {
                    id,
                    first_seq,
                    fields,
                })
                .collect();
            let vectors = live.iter().map(|&(_, i, r)| inputs[i].0.vector(r));
            let segments_dir = self.dir.join(SEGMENTS_DIR);
            Some(Arc::new(Segment::write(
                &segments_dir,
                seg_id,
                dim,
                vectors,
                &rows,
                Some(&builder),
            )?))
        };
        crash_point!(
            "collection::compact::before_swap",
            Err(EngineError::Internal(
                "failpoint collection::compact::before_swap".into()
            ))
        );
        let _writer = self.writer.lock();
        if self.recovery.generation.load(Ordering::Relaxed) != generation {
            // A log recovery replaced the state since the merge read its tombstones: deletes it
            // saw may have been dropped, so its result could lose rows. Leave it unpublished.
            drop(_writer);
            if let Some(seg) = &new_seg {
                let _ = fs::remove_dir_all(seg.dir());
            }
            tracing::info!(collection = %self.dir.display(), "compaction abandoned: the log recovered meanwhile");
            return Ok(false);
        }
        let mut state = self.state.write();
        let input_ids: Vec<u64> = inputs.iter().map(|(s, _)| s.id()).collect();
        state.replace_segments(&input_ids, new_seg.clone(), &map)?;
        let mut m = self.manifest.lock();
        let stale = self.publish(&mut state, &mut m, None)?;
        drop(m);
        drop(state);
        drop(_writer);
        crash_point!(
            "collection::compact::after_swap",
            Err(EngineError::Internal(
                "failpoint collection::compact::after_swap".into()
            ))
        );
        for path in stale {
            let _ = fs::remove_file(path);
        }
        for (seg, _) in &inputs {
            // Readers still holding the old segments keep their mappings (unlinked files stay
            // readable until unmapped).
            if let Err(e) = fs::remove_dir_all(seg.dir()) {
                tracing::warn!(dir = %seg.dir().display(), error = %e, "could not remove a compacted segment");
            }
        }
        self.compactions.done.fetch_add(1, Ordering::Relaxed);
        self.compactions.micros.fetch_add(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        tracing::info!(
            collection = %self.dir.display(),
            inputs = inputs.len(),
            rows = live.len(),
            extended_rows = kept,
            dropped = dead - base.map_or(0, |b| inputs[b].1.count()),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "segments compacted"
        );
        Ok(true)
    }

    /// The segments the background policy would merge now ([`plan_compaction`]), by id.
    pub(super) fn planned_compaction(&self) -> Option<Vec<u64>> {
        let st = self.state.read();
        let segs = st.segments();
        let sizes: Vec<(usize, usize)> = segs
            .iter()
            .map(|s| (s.seg.rows(), s.dead.count()))
            .collect();
        plan_compaction(&sizes).map(|picked| picked.iter().map(|&i| segs[i].seg.id()).collect())
    }
}

/// The coder of a graph rebuilt over `vectors`: for l2 and ip, codes centred on their mean
/// (see [`quant`]); cosine codes have no centre.
pub(super) fn mean_coder<'a>(
    space: Space,
    dim: usize,
    vectors: impl Iterator<Item = Result<&'a [f32], EngineError>>,
) -> Result<quant::Coder, EngineError> {
    if space == Space::Cosine {
        return Ok(quant::Coder::plain(space));
    }
    let mut sum = vec![0f64; dim];
    let mut n = 0usize;
    for v in vectors {
        for (s, x) in sum.iter_mut().zip(v?) {
            *s += f64::from(*x);
        }
        n += 1;
    }
    if n == 0 {
        return Ok(quant::Coder::plain(space));
    }
    let mean: Vec<f32> = sum.iter().map(|s| (s / n as f64) as f32).collect();
    Ok(quant::Coder::centred(space, &mean))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    use crate::engine::collection::testing::*;
    use crate::engine::{Collection, CollectionConfig};
    use crate::types::*;

    /// A planned merge extends the clean base's graph, carrying its few dead rows as
    /// tombstones; an explicit compaction then drops them. Every live record, the newest
    /// version of an updated id, and exact nearest neighbours survive both.
    #[test]
    fn merges_extend_the_base_graph_and_keep_every_record() {
        let (_d, c) = open(Space::L2);
        let v = |i: usize| vec![(i % 37) as f32, (i / 37) as f32, (i as f32).sin()];
        let add = |from: usize, to: usize| {
            c.apply(
                WriteBatch::Add(
                    (from..to)
                        .map(|i| rec(&format!("r{i}"), &v(i), &[], None))
                        .collect(),
                ),
                None,
            )
            .unwrap();
        };
        add(0, 400);
        assert!(c.flush().unwrap());
        add(400, 550);
        assert!(c.flush().unwrap());
        // A few deletes in the base (under 10%) and an update that moves r7 out of it.
        c.apply(
            WriteBatch::Delete(DeleteSelector {
                ids: Some((0..20).map(|i| format!("r{}", i * 3)).collect()),
                ..Default::default()
            }),
            None,
        )
        .unwrap();
        c.apply(
            WriteBatch::Upsert(vec![UpsertRecord {
                id: "r7".into(),
                embedding: vec![100.0, 100.0, 0.5],
                metadata: None,
                document: None,
                uri: None,
            }]),
            None,
        )
        .unwrap();
        assert!(c.flush().unwrap());
        assert_eq!(c.segment_count(), 3);
        let before = all(&c);
        let check = |c: &Collection, outlier: bool| {
            let now = all(c);
            assert_eq!(now.ids, before.ids);
            assert_eq!(now.embeddings, before.embeddings);
            // Exact neighbours on a grid full of near-ties: a miss here was a real defect of the
            // concurrent build (a new point that started a level at a point still being linked,
            // whose own list then overwrote the back-link), seen in CI about one run in ten.
            // The moved outlier r7 is checked where the merge inserts it after the grid; a
            // rebuild inserts it early (it keeps its first sequence), before the grid's far
            // corner exists, and HNSW then has no link to it from there (a known limit for an
            // outlier this far from everything: `index::builder`'s docs, "Graph quality").
            for q in [
                vec![3.0, 2.0, 0.1],
                vec![100.0, 100.0, 0.5],
                vec![36.0, 14.0, 0.9],
                vec![30.0, 9.0, -0.5],
            ]
            .into_iter()
            .filter(|q| outlier || q[0] < 100.0)
            {
                let got = c
                    .query(&QueryRequest {
                        embeddings: vec![q.clone()],
                        n_results: 5,
                        ids: None,
                        filter: None,
                        include: Include::QUERY_DEFAULT,
                    })
                    .unwrap();
                let mut want: Vec<(f32, &String)> = before
                    .ids
                    .iter()
                    .zip(before.embeddings.as_ref().unwrap())
                    .map(|(id, e)| (e.iter().zip(&q).map(|(a, b)| (a - b) * (a - b)).sum(), id))
                    .collect();
                want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
                let want: Vec<&String> = want.iter().take(5).map(|w| w.1).collect();
                let got: Vec<&String> = got.results[0].ids.iter().collect();
                assert_eq!(got, want, "query {q:?}");
            }
        };
        let ids: Vec<u64> = c
            .inner
            .state
            .read()
            .segments()
            .iter()
            .map(|s| s.seg.id())
            .collect();
        assert!(c
            .inner
            .compact(&AtomicBool::new(false), Some(&ids))
            .unwrap());
        assert_eq!(c.segment_count(), 1);
        // 400 base rows kept as they were (20 + 1 dead among them), then 150 + 1 live ones.
        let rows = c.inner.state.read().segments()[0].seg.rows();
        assert_eq!(rows, 400 + 150 + 1);
        check(&c, true);
        assert!(c.compact().unwrap());
        assert_eq!(c.inner.state.read().segments()[0].seg.rows(), 550 - 20);
        check(&c, false);
        drop(c);
        let c = Collection::open(&_d.path().join("c")).unwrap();
        check(&c, false);
    }

    /// Segments the policy would merge but that were never merged (a crash loop kills
    /// compactions before they finish; here, foreground flushes, which plan none) are merged
    /// after open, on the catalog's request, with no further write; past the process-wide
    /// cap on running compactions the merge waits for a slot instead of starting.
    #[test]
    fn segments_left_unmerged_are_merged_after_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        {
            let c = Collection::create(&path, CollectionConfig::default()).unwrap();
            for b in 0..4 {
                let rows = (0..50)
                    .map(|i| rec(&format!("r{b}-{i}"), &[b as f32, i as f32], &[], None))
                    .collect();
                c.apply(WriteBatch::Add(rows), None).unwrap();
                c.flush().unwrap();
            }
            assert_eq!(c.segment_count(), 4);
            assert!(c.inner.planned_compaction().is_some());
        }
        let c = Collection::open(&path).unwrap();
        assert_eq!(c.segment_count(), 4, "open alone merges nothing");
        // With the process's compaction slots taken, the merge is put off, not lost: it is
        // asked for again (COMPACTION_RETRY) once a slot is free.
        RUNNING_COMPACTIONS.fetch_add(MAX_RUNNING_COMPACTIONS, Ordering::SeqCst);
        c.request_compaction_check();
        std::thread::sleep(Duration::from_millis(300));
        let put_off = c.segment_count();
        RUNNING_COMPACTIONS.fetch_sub(MAX_RUNNING_COMPACTIONS, Ordering::SeqCst);
        assert_eq!(put_off, 4, "no compaction starts past the process-wide cap");
        // Waits for the event, with a generous bound so a hang fails instead of blocking.
        let deadline = Instant::now() + Duration::from_secs(120);
        while c.segment_count() > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(c.segment_count(), 1);
        assert_eq!(c.count(), 200);
        assert_eq!(c.inner.planned_compaction(), None);
    }

    #[test]
    fn compaction_policy_is_size_tiered() {
        // One segment, or a small newcomer next to a big base: nothing to do.
        assert_eq!(plan_compaction(&[]), None);
        assert_eq!(plan_compaction(&[(65_536, 0)]), None);
        assert_eq!(plan_compaction(&[(400_000, 0), (65_536, 0)]), None);
        // The others reach a quarter of the largest: merge everything into it.
        assert_eq!(
            plan_compaction(&[(65_536, 0), (34_464, 0)]),
            Some(vec![0, 1])
        );
        assert_eq!(
            plan_compaction(&[(400_000, 0), (65_536, 0), (40_000, 0)]),
            Some(vec![0, 1, 2])
        );
        // Dead rows count against a segment's size.
        assert_eq!(
            plan_compaction(&[(400_000, 300_000), (65_536, 0)]),
            Some(vec![0])
        );
        // Too many small segments: merged among themselves, the base left alone.
        let many = [(1_000_000, 0), (10, 0), (10, 0), (10, 0), (10, 0)];
        assert_eq!(plan_compaction(&many), Some(vec![1, 2, 3, 4]));
        // Mostly dead: rewritten alone.
        assert_eq!(
            plan_compaction(&[(100_000, 0), (10_000, 5_000)]),
            Some(vec![1])
        );
        assert_eq!(plan_compaction(&[(2_000, 900)]), None);
    }
}
