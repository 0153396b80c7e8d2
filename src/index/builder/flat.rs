//! The builder's side of the flat graph layout: [`GraphBuilder::from_graph`] seeds a builder
//! with an exported graph (to extend a segment's graph instead of rebuilding it), and
//! [`GraphBuilder::export`] writes one, after [`repair_reachability`] has made every point
//! reachable from the entry (what a search's completeness relies on).

use std::sync::atomic::{AtomicU32, Ordering};

use super::{with_scratch, BuildParams, GraphBuilder};
use crate::index::error::{IndexError, Result};
use crate::index::flat_graph::{links, FlatGraph, GraphParts, UpperLayer, NO_NEIGHBOUR};
use crate::index::quant;
use crate::index::topk::Scored;

impl GraphBuilder {
    /// A builder holding an existing flat graph — its links, levels and entry point — over
    /// the codes `code(row, out)` writes into `out` (made by `coder`, which codes the points
    /// added later),
    /// ready for more points (ids `graph.n()..`). Extending a segment's graph this way costs a
    /// copy, not the distance computations of a rebuild. The graph must have been built with
    /// `params.max_neighbors`.
    pub fn from_graph<B, E>(
        coder: quant::Coder,
        dim: usize,
        params: BuildParams,
        graph: &FlatGraph<B>,
        mut code: impl FnMut(u32, &mut [i8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<GraphBuilder, E>
    where
        B: AsRef<[u8]>,
        E: From<IndexError>,
    {
        let m = params.max_neighbors;
        if graph.m() != m || graph.m0() != 2 * m {
            return Err(IndexError::InvalidParams(format!(
                "graph has {}/{} links per point, the builder {m}/{}",
                graph.m(),
                graph.m0(),
                2 * m
            ))
            .into());
        }
        let n = graph.n();
        let b = GraphBuilder::with_coder(
            coder,
            dim,
            BuildParams {
                capacity_hint: params.capacity_hint.max(n),
                ..params
            },
        )?;
        {
            let mut st = b.store.write();
            st.grow(n);
            let code_len = st.code_len;
            for i in 0..n as u32 {
                let at = i as usize * code_len;
                code(i, &mut st.codes[at..at + code_len])?;
                st.assigned[i as usize] = true;
                st.ready[i as usize].store(true, Ordering::Relaxed);
                let row = graph.layer0_row(i)?;
                let dst = st.row(i, 0);
                let mut filled = 0u32;
                for (slot, nb) in dst[1..].iter().zip(links(row, n as u32)) {
                    slot.store(nb, Ordering::Relaxed);
                    filled += 1;
                }
                dst[0].store(filled, Ordering::Relaxed);
            }
            let row_up = st.row_up;
            for level in 1..=graph.max_level() {
                for id in graph.upper_ids(level)? {
                    if id as usize >= n {
                        continue;
                    }
                    let have = st.levels[id as usize] as usize;
                    if level > have {
                        st.levels[id as usize] = level as u8;
                    }
                }
            }
            for i in 0..n {
                let level = st.levels[i] as usize;
                if level > 0 {
                    st.upper[i] = Some((0..level * row_up).map(|_| AtomicU32::new(0)).collect());
                }
            }
            for level in 1..=graph.max_level() {
                for id in graph.upper_ids(level)? {
                    let Some(row) = graph.upper_row(level, id)? else {
                        continue;
                    };
                    let dst = st.row(id, level);
                    if dst.is_empty() {
                        continue;
                    }
                    let mut filled = 0u32;
                    for (slot, nb) in dst[1..].iter().zip(links(row, n as u32)) {
                        slot.store(nb, Ordering::Relaxed);
                        filled += 1;
                    }
                    dst[0].store(filled, Ordering::Relaxed);
                }
            }
            b.len.store(n, Ordering::Release);
        }
        if n > 0 {
            b.store_top(graph.entry(), graph.max_level());
        }
        Ok(b)
    }

    /// Freezes, then exports the graph as [`GraphParts`] (point ids must be exactly
    /// `0..len`), every point reachable from the entry on layer 0. Refuses an empty index.
    pub fn export_parts(&self) -> Result<GraphParts> {
        self.freeze();
        let st = self.store.read();
        let n = self.len();
        let Some((entry, max_level)) = self.load_top() else {
            return Err(IndexError::Empty);
        };
        if n == 0 {
            return Err(IndexError::Empty);
        }
        if st.assigned.len() != n || st.assigned.iter().any(|a| !a) {
            return Err(IndexError::NotDense(format!(
                "{n} points inserted, ids do not cover 0..{n}"
            )));
        }
        let (parts, _dropped, repaired) = flatten(
            n,
            self.params.max_neighbors,
            entry,
            max_level,
            |i| st.levels[i as usize] as usize,
            |i, l, out| st.neighbours_into(i, l, out),
            |u, reached| {
                let code = st.code(u);
                let ep = Scored {
                    distance: self.dist(code, st.code(entry)),
                    row: entry,
                };
                let accept = |v: u32| reached[v as usize] && v != u;
                let found =
                    with_scratch(|s| self.beam(&st, code, ep, 64, 0, s, accept, u64::MAX).0);
                found.iter().map(|c| c.row).collect()
            },
        );
        if repaired > 0 {
            tracing::debug!(repaired, "graph export linked unreachable points");
        }
        Ok(parts)
    }

    /// Freezes and encodes the flat `graph.bin` image (see [`crate::index::flat_graph`]).
    pub fn export(&self) -> Result<Vec<u8>> {
        self.export_parts()?.encode()
    }
}

/// The flat layout of a frozen graph of `n` points (ids `0..n`), every point reachable from
/// `entry` on layer 0: the part of an export this builder and the hnsw_rs baseline share.
/// Point `i` is on layers `0..=level(i)` (`max_level` is the highest); `links_of(i, l, out)`
/// fills `out` with its links on layer `l`, nearest first. A link is kept if it is another
/// point of that layer, not already in the row, and the row (`2m` slots on layer 0, `m` above)
/// has room; then [`repair_reachability`] links the unreachable points, with `search` as its
/// fallback. Returns the parts, the links dropped and the links the repair added.
pub(crate) fn flatten(
    n: usize,
    m: usize,
    entry: u32,
    max_level: usize,
    level: impl Fn(u32) -> usize,
    mut links_of: impl FnMut(u32, usize, &mut Vec<u32>),
    search: impl FnMut(u32, &[bool]) -> Vec<u32>,
) -> (GraphParts, usize, usize) {
    let m0 = 2 * m;
    let mut dropped = 0;
    let mut buf = Vec::new();
    let mut fill = |i: u32, l: usize, row: &mut [u32]| {
        links_of(i, l, &mut buf);
        let mut filled = 0;
        for &nb in &buf {
            let ok = (nb as usize) < n
                && nb != i
                && (l == 0 || level(nb) >= l)
                && !row[..filled].contains(&nb);
            if ok && filled < row.len() {
                row[filled] = nb;
                filled += 1;
            } else {
                dropped += 1;
            }
        }
    };
    let mut layer0 = vec![NO_NEIGHBOUR; n * m0];
    for i in 0..n {
        fill(i as u32, 0, &mut layer0[i * m0..(i + 1) * m0]);
    }
    let mut upper = Vec::with_capacity(max_level);
    for l in 1..=max_level {
        let ids: Vec<u32> = (0..n as u32).filter(|&i| level(i) >= l).collect();
        let mut out = vec![NO_NEIGHBOUR; ids.len() * m];
        for (j, &i) in ids.iter().enumerate() {
            fill(i, l, &mut out[j * m..(j + 1) * m]);
        }
        upper.push(UpperLayer { ids, links: out });
    }
    let repaired = repair_reachability(entry, m0, &mut layer0, search);
    let parts = GraphParts {
        m: m as u32,
        m0: m0 as u32,
        entry,
        layer0,
        upper,
    };
    (parts, dropped, repaired)
}

/// Makes every point reachable from `entry` on layer 0, so a search that runs out of
/// candidates has really seen every point (what [`SearchOutput::complete`] relies on).
/// Shrinking a full neighbour list drops its farthest link, which may have been some point's
/// last in-link. Each such point is linked from the nearest reachable point among its own links
/// (or, if none, among those `search(u, reached)` finds), into a free slot if there is one,
/// else over that row's last link (the displaced point is rechecked in the next round).
/// Returns the links added.
fn repair_reachability(
    entry: u32,
    m0: usize,
    layer0: &mut [u32],
    mut search: impl FnMut(u32, &[bool]) -> Vec<u32>,
) -> usize {
    let n = layer0.len() / m0;
    let mut reached = vec![false; n];
    let mut stack = Vec::new();
    let mut added = 0;
    for _round in 0..4 {
        reached.iter_mut().for_each(|r| *r = false);
        mark_reachable(entry, m0, layer0, &mut reached, &mut stack);
        let missing: Vec<u32> = (0..n as u32).filter(|&u| !reached[u as usize]).collect();
        if missing.is_empty() {
            break;
        }
        for u in missing {
            if reached[u as usize] {
                continue; // reached through an earlier repair this round
            }
            let mut candidates: Vec<u32> = layer0[u as usize * m0..(u as usize + 1) * m0]
                .iter()
                .copied()
                .take_while(|&v| v != NO_NEIGHBOUR)
                .filter(|&v| reached[v as usize])
                .collect();
            if candidates.is_empty() {
                candidates = search(u, &reached)
                    .into_iter()
                    .filter(|&v| (v as usize) < n && v != u && reached[v as usize])
                    .collect();
            }
            let Some(&first) = candidates.first() else {
                continue;
            };
            let target = candidates
                .iter()
                .copied()
                .find(|&v| layer0[(v as usize + 1) * m0 - 1] == NO_NEIGHBOUR)
                .unwrap_or(first);
            let row = &mut layer0[target as usize * m0..(target as usize + 1) * m0];
            let slot = row
                .iter()
                .position(|&v| v == NO_NEIGHBOUR)
                .unwrap_or(m0 - 1);
            row[slot] = u;
            added += 1;
            mark_reachable(u, m0, layer0, &mut reached, &mut stack);
        }
    }
    added
}

/// Marks everything reachable from `from` on layer 0 (iterative DFS; `reached` persists).
pub(crate) fn mark_reachable(
    from: u32,
    m0: usize,
    layer0: &[u32],
    reached: &mut [bool],
    stack: &mut Vec<u32>,
) {
    if reached[from as usize] {
        return;
    }
    reached[from as usize] = true;
    stack.push(from);
    while let Some(u) = stack.pop() {
        let row = &layer0[u as usize * m0..(u as usize + 1) * m0];
        for &v in row.iter().take_while(|&&v| v != NO_NEIGHBOUR) {
            if !reached[v as usize] {
                reached[v as usize] = true;
                stack.push(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{data, params};
    use super::*;
    use crate::index::{exact_search, F32Vectors, PreparedQuery};
    use crate::types::Space;

    #[test]
    fn extending_an_exported_graph_keeps_it_and_links_new_points() {
        let (n, dim) = (2000, 16);
        let v = data(n, dim, 11);
        let store = F32Vectors::new(dim, &v, None).unwrap();
        let rows: Vec<(&[f32], u32)> = v
            .chunks(dim)
            .enumerate()
            .map(|(i, r)| (r, i as u32))
            .collect();
        let first = GraphBuilder::new(Space::L2, dim, params(8, 48)).unwrap();
        first.insert_batch(&rows[..1200]).unwrap();
        let parts = first.export_parts().unwrap();
        let graph = FlatGraph::from_bytes("g", parts.encode().unwrap()).unwrap();
        let codes: Vec<Vec<i8>> = v.chunks(dim).map(|r| quant::encode(Space::L2, r)).collect();
        let seeded = || {
            GraphBuilder::from_graph(
                quant::Coder::plain(Space::L2),
                dim,
                params(8, 48),
                &graph,
                |i, out: &mut [i8]| {
                    out.copy_from_slice(&codes[i as usize]);
                    Ok::<_, IndexError>(())
                },
            )
            .unwrap()
        };
        let ext = seeded();
        assert_eq!(ext.len(), 1200);
        // The copied graph is the exported one, link for link.
        let again = ext.export_parts().unwrap();
        assert_eq!(again, parts);
        let ext = seeded();
        ext.insert_batch(&rows[1200..]).unwrap();
        assert_eq!(ext.len(), n);
        let mut hits = 0;
        for q in v.chunks(dim).step_by(40) {
            let want = exact_search(
                &store,
                &PreparedQuery::new(Space::L2, q).unwrap(),
                10,
                |_| true,
            );
            let got = ext.search(q, 10, 48, |_| true, &store).unwrap();
            hits += got
                .results
                .iter()
                .filter(|r| want.iter().any(|w| w.row == r.row))
                .count();
        }
        assert!(
            hits as f64 / 500.0 >= 0.95,
            "recall {}",
            hits as f64 / 500.0
        );
        // Wrong M is refused.
        assert!(GraphBuilder::from_graph(
            quant::Coder::plain(Space::L2),
            dim,
            params(9, 48),
            &graph,
            |i, out: &mut [i8]| {
                out.copy_from_slice(&codes[i as usize]);
                Ok::<_, IndexError>(())
            }
        )
        .is_err());
    }
}
