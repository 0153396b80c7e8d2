//! A manual probe, not a CI test: recall and distance computations of the flat searcher and
//! of the live builder's own search per ef, build rate, layer-0 fill. Run with
//! `N=100000 DIM=32 cargo test --release --test it -- --ignored --nocapture index::probe`
//! (`SIGMA` sets cluster spread, default 1.0).

use crate::support::index::*;
use std::time::Instant;
use vectord::index::*;
use vectord::types::Space;

#[test]
#[ignore]
fn probe() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10000);
    let dim: usize = std::env::var("DIM")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    for space in [Space::L2, Space::Cosine, Space::Ip] {
        let (data, queries) = clustered(
            1,
            n,
            200,
            dim,
            100,
            std::env::var("SIGMA")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(1.0),
            space,
        );
        let t = Instant::now();
        let b = build(space, dim, &data, 16, 100);
        let bt = t.elapsed();
        let bytes = b.export().unwrap();
        let g = FlatGraph::from_bytes("mem", bytes).unwrap();
        g.verify().unwrap();
        let deg: usize = (0..n as u32).map(|i| g.neighbours(i).unwrap().len()).sum();
        println!(
            "avg layer0 degree {:.1} of {}",
            deg as f64 / n as f64,
            g.m0()
        );
        let inv = inv_norms(&data, dim);
        let store = F32Vectors::new(dim, &data, Some(&inv)).unwrap();
        let tr = truth(&store, space, &queries, 10, |_| true);
        println!(
            "{space:?} n={n} build {:?} ({:.0} pts/s) bytes={} levels={}",
            bt,
            n as f64 / bt.as_secs_f64(),
            g.byte_len(),
            g.max_level()
        );
        for ef in [16, 32, 64, 128] {
            let mut rec = 0.0;
            let mut ev = 0u64;
            let mut hrec = 0.0;
            let mut hev = 0u64;
            for (q, t) in queries.iter().zip(&tr) {
                let pq = PreparedQuery::new(space, q).unwrap();
                let out = search(&g, &store, &pq, &SearchParams::new(10, ef), |_| true).unwrap();
                rec += overlap(&out.results, t);
                ev += out.stats.distance_computations;
                let h = b.search(q, 10, ef, |_| true, &store).unwrap();
                hrec += overlap(&h.results, t);
                hev += h.stats.distance_computations;
            }
            let nq = queries.len() as f64;
            println!(
                "  ef={ef} flat recall {:.4} evals {:.0} ({:.2}%) | hnsw recall {:.4} evals {:.0}",
                rec / nq,
                ev as f64 / nq,
                100.0 * ev as f64 / nq / n as f64,
                hrec / nq,
                hev as f64 / nq
            );
        }
    }
}
