//! Benchmark datasets: the shared harness's folder layout, bare `.npy` / `.fvecs` files, or a
//! seeded clustered generator with filterable metadata.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::{json, Map, Value};

/// A dense row-major `f32` matrix.
#[derive(Debug, Clone)]
pub struct Matrix {
    /// Number of rows.
    pub rows: usize,
    /// Floats per row.
    pub dim: usize,
    /// `rows * dim` floats.
    pub data: Vec<f32>,
}

impl Matrix {
    /// Row `i` (panics only on an out-of-range index, which callers never pass).
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Keeps the first `n` rows.
    pub fn truncate(&mut self, n: usize) {
        if n < self.rows {
            self.rows = n;
            self.data.truncate(n * self.dim);
        }
    }
}

/// A named `where` filter to benchmark, sent to the server unchanged.
#[derive(Debug, Clone)]
pub struct FilterSpec {
    /// Short name used in reports (`payer_1pct`).
    pub name: String,
    /// The Chroma `where` object.
    pub where_: Value,
}

/// Everything a benchmark run needs from the data side.
#[derive(Debug)]
pub struct Dataset {
    /// Human name (folder name, file stem or `gen-…`).
    pub name: String,
    /// Base vectors; row i is sent with id `i`.
    pub base: Matrix,
    /// Query vectors.
    pub queries: Matrix,
    /// Per base row metadata (objects), if the dataset has any.
    pub metadatas: Option<Vec<Map<String, Value>>>,
    /// Filters to run when metadata is present.
    pub filters: Vec<FilterSpec>,
    /// Folder where ground truth is cached (next to the data when writable).
    pub cache_dir: PathBuf,
}

/// Reads a little-endian `.npy` of `<f4` (or `<f8`, narrowed) with shape `(rows, dim)`.
pub fn read_npy(path: &Path) -> anyhow::Result<Matrix> {
    let mut f =
        BufReader::new(File::open(path).with_context(|| format!("opening {}", path.display()))?);
    let mut magic = [0u8; 8];
    f.read_exact(&mut magic)?;
    if &magic[..6] != b"\x93NUMPY" {
        bail!("{} is not a .npy file", path.display());
    }
    let header_len = if magic[6] == 1 {
        let mut b = [0u8; 2];
        f.read_exact(&mut b)?;
        u16::from_le_bytes(b) as usize
    } else {
        let mut b = [0u8; 4];
        f.read_exact(&mut b)?;
        u32::from_le_bytes(b) as usize
    };
    let mut header = vec![0u8; header_len];
    f.read_exact(&mut header)?;
    let header = String::from_utf8_lossy(&header);
    let descr = header_value(&header, "descr").context("npy header without descr")?;
    if header_value(&header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
        bail!("{}: Fortran-order arrays are not supported", path.display());
    }
    let shape = header_value(&header, "shape").context("npy header without shape")?;
    let shape: Vec<usize> = shape
        .trim_start_matches('(')
        .split(')')
        .next()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: bad shape in header {header:?}", path.display()))?;
    let (rows, dim) = match shape[..] {
        [r, d] => (r, d),
        [d] => (1, d),
        _ => bail!("{}: expected a 2-d array, shape {shape:?}", path.display()),
    };
    // The value is a quoted token: `'<f4', 'fortran_order': …` → `<f4`.
    let descr = descr
        .trim_start_matches(['\'', '"'])
        .split(['\'', '"'])
        .next()
        .unwrap_or("");
    let mut raw = Vec::new();
    f.read_to_end(&mut raw)?;
    let data: Vec<f32> = match descr {
        "<f4" => le_chunks::<4>(&raw, rows * dim, path)?
            .map(f32::from_le_bytes)
            .collect(),
        "<f8" => le_chunks::<8>(&raw, rows * dim, path)?
            .map(|b| f64::from_le_bytes(b) as f32)
            .collect(),
        other => bail!(
            "{}: dtype {other} not supported (use float32)",
            path.display()
        ),
    };
    Ok(Matrix { rows, dim, data })
}

/// The value text after `'key':` in a numpy header dict (up to the next top-level comma).
fn header_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))?;
    let rest = header[at + key.len() + 2..]
        .trim_start()
        .strip_prefix(':')?;
    Some(rest.trim_start())
}

fn le_chunks<'a, const N: usize>(
    raw: &'a [u8],
    count: usize,
    path: &Path,
) -> anyhow::Result<impl Iterator<Item = [u8; N]> + 'a> {
    if raw.len() < count * N {
        bail!(
            "{}: truncated ({} bytes of data, need {})",
            path.display(),
            raw.len(),
            count * N
        );
    }
    Ok(raw[..count * N]
        .chunks_exact(N)
        .map(|c| <[u8; N]>::try_from(c).unwrap_or([0; N])))
}

/// Reads an `.fvecs` file: each row is a little-endian i32 dimension, then that many f32.
pub fn read_fvecs(path: &Path) -> anyhow::Result<Matrix> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if raw.len() < 4 {
        bail!("{}: empty fvecs file", path.display());
    }
    let dim = i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    if dim <= 0 {
        bail!("{}: bad dimension {dim}", path.display());
    }
    let dim = dim as usize;
    let stride = 4 + 4 * dim;
    if raw.len() % stride != 0 {
        bail!(
            "{}: size {} is not a multiple of the row size {stride}",
            path.display(),
            raw.len()
        );
    }
    let rows = raw.len() / stride;
    let mut data = Vec::with_capacity(rows * dim);
    for r in raw.chunks_exact(stride) {
        if r[..4] != raw[..4] {
            bail!("{}: rows of different dimensions", path.display());
        }
        data.extend(
            r[4..]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
    }
    Ok(Matrix { rows, dim, data })
}

/// `.npy` or `.fvecs`, by extension.
pub fn read_vectors(path: &Path) -> anyhow::Result<Matrix> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => read_npy(path),
        Some("fvecs") => read_fvecs(path),
        _ => bail!("{}: expected a .npy or .fvecs file", path.display()),
    }
}

/// One JSON object per line; line i is the metadata of base row i.
pub fn read_metadatas(path: &Path) -> anyhow::Result<Vec<Map<String, Value>>> {
    let f =
        BufReader::new(File::open(path).with_context(|| format!("opening {}", path.display()))?);
    let mut out = Vec::new();
    for (i, line) in f.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(Value::Object(m)) => out.push(m),
            Ok(_) => bail!("{}:{}: not a JSON object", path.display(), i + 1),
            Err(e) => bail!("{}:{}: {e}", path.display(), i + 1),
        }
    }
    Ok(out)
}

/// A `filters.json`: a list of `{"name", "where", …}` (extra keys ignored).
pub fn read_filters(path: &Path) -> anyhow::Result<Vec<FilterSpec>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let Value::Array(items) = v else {
        bail!(
            "{}: expected a JSON list of {{name, where}}",
            path.display()
        );
    };
    items
        .into_iter()
        .map(|it| {
            let name = it
                .get("name")
                .and_then(Value::as_str)
                .context("filter without a name")?;
            let w = it.get("where").context("filter without a where")?;
            Ok(FilterSpec {
                name: name.to_string(),
                where_: w.clone(),
            })
        })
        .collect()
}

/// A deterministic 64-bit generator (SplitMix64): the generator must give the same dataset for
/// the same seed on every machine, and needs nothing more than this.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// An index drawn with probability proportional to `cumulative[i] - cumulative[i-1]`.
    pub fn pick(&mut self, cumulative: &[f64]) -> usize {
        let total = cumulative.last().copied().unwrap_or(0.0);
        let x = self.uniform() * total;
        cumulative
            .partition_point(|&c| c <= x)
            .min(cumulative.len().saturating_sub(1))
    }
}

fn cumulative(weights: &[f64]) -> Vec<f64> {
    weights
        .iter()
        .scan(0.0, |acc, w| {
            *acc += w;
            Some(*acc)
        })
        .collect()
}

/// Number of payers in generated metadata; with Zipf exponent 1.1 the largest holds ~31 % of
/// rows and the smallest ~1 %, as in the shared harness's real sets.
const PAYERS: usize = 22;
const ZIPF_S: f64 = 1.109;

/// Parameters of the clustered generator.
#[derive(Debug, Clone, Copy)]
pub struct GenSpec {
    /// Base vectors.
    pub n: usize,
    /// Dimension.
    pub dim: usize,
    /// Gaussian clusters (sizes skewed, Zipf-like).
    pub clusters: usize,
    /// Query vectors (fresh draws from the same mixture).
    pub queries: usize,
    /// Seed: the same seed gives the same data.
    pub seed: u64,
}

/// A Gaussian mixture on the unit sphere with skewed cluster sizes, plus metadata
/// (`payer_id` Zipf over 22 payers, `plan_type`, `effective_year` 2018–2026 weighted to recent
/// years, `active` more likely for recent years) and the four filters of the shared harness.
pub fn generate(spec: GenSpec, cache_root: &Path) -> anyhow::Result<Dataset> {
    if spec.n == 0 || spec.dim == 0 || spec.clusters == 0 || spec.queries == 0 {
        bail!("--generate, --dim, --clusters and --num-queries must all be positive");
    }
    let mut rng = Rng::new(spec.seed);
    let centers: Vec<Vec<f64>> = (0..spec.clusters)
        .map(|_| unit((0..spec.dim).map(|_| rng.normal()).collect()))
        .collect();
    let cluster_weights = cumulative(
        &(1..=spec.clusters)
            .map(|i| 1.0 / (i as f64).powf(0.8))
            .collect::<Vec<_>>(),
    );
    // Noise per coordinate such that a point sits at ~cos 0.7 from its centre, whatever the dim.
    let sigma = 1.0 / (spec.dim as f64).sqrt();
    let draw = |rng: &mut Rng, out: &mut Vec<f32>| {
        let c = &centers[rng.pick(&cluster_weights)];
        let v = unit(c.iter().map(|x| x + sigma * rng.normal()).collect());
        out.extend(v.iter().map(|&x| x as f32));
    };
    let mut base = Vec::with_capacity(spec.n * spec.dim);
    for _ in 0..spec.n {
        draw(&mut rng, &mut base);
    }
    let mut queries = Vec::with_capacity(spec.queries * spec.dim);
    for _ in 0..spec.queries {
        draw(&mut rng, &mut queries);
    }
    let payers: Vec<String> = (0..PAYERS)
        .map(|i| format!("P{:03}", (i * 37 + 101) % 1000))
        .collect();
    let payer_weights = cumulative(
        &(1..=PAYERS)
            .map(|i| 1.0 / (i as f64).powf(ZIPF_S))
            .collect::<Vec<_>>(),
    );
    let year_weights = cumulative(&[8.0, 9.0, 10.0, 10.0, 11.0, 12.0, 13.0, 13.0, 14.0]);
    let plans = ["HMO", "PPO", "HDHP", "MAPD"];
    let plan_weights = cumulative(&[27.0, 45.0, 15.0, 13.0]);
    let metadatas: Vec<Map<String, Value>> = (0..spec.n)
        .map(|_| {
            let payer = &payers[rng.pick(&payer_weights)];
            let year_idx = rng.pick(&year_weights);
            let p_active = 0.25 + 0.65 * year_idx as f64 / 8.0;
            let active = rng.uniform() < p_active;
            let plan = plans[rng.pick(&plan_weights)];
            let mut m = Map::new();
            m.insert("payer_id".into(), json!(payer));
            m.insert("plan_type".into(), json!(plan));
            m.insert("effective_year".into(), json!(2018 + year_idx as i64));
            m.insert("active".into(), json!(active));
            m
        })
        .collect();
    let filters = vec![
        FilterSpec {
            name: "payer_1pct".into(),
            where_: json!({"payer_id": payers[PAYERS - 1]}),
        },
        FilterSpec {
            name: "payer_30pct".into(),
            where_: json!({"payer_id": payers[0]}),
        },
        FilterSpec {
            name: "payer_in3".into(),
            where_: json!({"payer_id": {"$in": [payers[4], payers[9], payers[14]]}}),
        },
        FilterSpec {
            name: "recent_active".into(),
            where_: json!({"$and": [{"effective_year": {"$gte": 2024}}, {"active": true}]}),
        },
    ];
    Ok(Dataset {
        name: format!(
            "gen-{}x{}-c{}-s{}",
            spec.n, spec.dim, spec.clusters, spec.seed
        ),
        base: Matrix {
            rows: spec.n,
            dim: spec.dim,
            data: base,
        },
        queries: Matrix {
            rows: spec.queries,
            dim: spec.dim,
            data: queries,
        },
        metadatas: Some(metadatas),
        filters,
        cache_dir: cache_root.to_path_buf(),
    })
}

fn unit(mut v: Vec<f64>) -> Vec<f64> {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-30);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// Loads a folder in the shared harness's layout: `base.npy`, `queries.npy`, and when present
/// `metadatas.jsonl` and `filters.json`.
pub fn load_dir(dir: &Path, cache_root: &Path) -> anyhow::Result<Dataset> {
    let base = read_npy(&dir.join("base.npy"))?;
    let queries = read_npy(&dir.join("queries.npy"))?;
    let meta_path = dir.join("metadatas.jsonl");
    let metadatas = if meta_path.exists() {
        Some(read_metadatas(&meta_path)?)
    } else {
        None
    };
    let filters_path = dir.join("filters.json");
    let filters = if filters_path.exists() {
        read_filters(&filters_path)?
    } else {
        Vec::new()
    };
    let name = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".into());
    Ok(Dataset {
        name,
        base,
        queries,
        metadatas,
        filters,
        cache_dir: writable_or(dir, cache_root),
    })
}

/// Loads bare vector files (and optional metadata and filters files).
pub fn load_files(
    base: &Path,
    queries: &Path,
    metadatas: Option<&Path>,
    filters: Option<&Path>,
    cache_root: &Path,
) -> anyhow::Result<Dataset> {
    let name = base
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".into());
    let dir = base.parent().unwrap_or(Path::new("."));
    Ok(Dataset {
        name,
        base: read_vectors(base)?,
        queries: read_vectors(queries)?,
        metadatas: metadatas.map(read_metadatas).transpose()?,
        filters: filters.map(read_filters).transpose()?.unwrap_or_default(),
        cache_dir: writable_or(dir, cache_root),
    })
}

/// `dir` if a file can be created in it, else `fallback`.
fn writable_or(dir: &Path, fallback: &Path) -> PathBuf {
    let probe = dir.join(format!(".vectord-bench-probe-{}", std::process::id()));
    match File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            dir.to_path_buf()
        }
        Err(_) => fallback.to_path_buf(),
    }
}

impl Dataset {
    /// Checks shapes: same dimension everywhere, one metadata object per base row.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.base.dim != self.queries.dim {
            bail!(
                "base dimension {} differs from query dimension {}",
                self.base.dim,
                self.queries.dim
            );
        }
        if self.base.rows == 0 || self.queries.rows == 0 {
            bail!("empty base or query set");
        }
        if let Some(m) = &self.metadatas {
            if m.len() != self.base.rows {
                bail!(
                    "{} metadata lines for {} base rows",
                    m.len(),
                    self.base.rows
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trip_of_a_hand_written_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
        let mut h = header.to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((h.len() as u16).to_le_bytes());
        bytes.extend(h.as_bytes());
        for x in [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.5] {
            bytes.extend(x.to_le_bytes());
        }
        std::fs::write(&p, bytes).unwrap();
        let m = read_npy(&p).unwrap();
        assert_eq!((m.rows, m.dim), (2, 3));
        assert_eq!(m.row(1), &[4.0, 5.0, 6.5]);
    }

    #[test]
    fn fvecs_rows_are_read_and_mixed_dimensions_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.fvecs");
        let mut bytes = Vec::new();
        for row in [[1.0f32, 2.0], [3.0, 4.0]] {
            bytes.extend(2i32.to_le_bytes());
            row.iter().for_each(|x| bytes.extend(x.to_le_bytes()));
        }
        std::fs::write(&p, &bytes).unwrap();
        let m = read_fvecs(&p).unwrap();
        assert_eq!((m.rows, m.dim), (2, 2));
        assert_eq!(m.row(1), &[3.0, 4.0]);
        bytes[12] = 3;
        std::fs::write(&p, &bytes).unwrap();
        assert!(read_fvecs(&p).is_err());
    }

    #[test]
    fn generator_is_deterministic_and_payers_are_skewed() {
        let spec = GenSpec {
            n: 5000,
            dim: 8,
            clusters: 10,
            queries: 5,
            seed: 7,
        };
        let a = generate(spec, Path::new("/tmp")).unwrap();
        let b = generate(spec, Path::new("/tmp")).unwrap();
        assert_eq!(a.base.data, b.base.data);
        let metas = a.metadatas.unwrap();
        let count = |p: &Value| {
            metas
                .iter()
                .filter(|m| m.get("payer_id") == Some(p))
                .count()
        };
        let big = count(&a.filters[1].where_["payer_id"]) as f64 / 5000.0;
        let small = count(&a.filters[0].where_["payer_id"]) as f64 / 5000.0;
        assert!((0.25..0.37).contains(&big), "largest payer share {big}");
        assert!(
            (0.003..0.02).contains(&small),
            "smallest payer share {small}"
        );
    }
}
