//! Where a searcher gets its distances: a query prepared once per search, and a [`VectorStore`]
//! that scores it against a stored row. Distances are Chroma's, computed by
//! [`distance::distance`], so graph search, exact scan and the memtable agree bit for bit.

use std::borrow::Cow;

use crate::index::distance;
use crate::index::error::{IndexError, Result};
use crate::index::quant;
use crate::types::Space;

/// A query vector with what every distance evaluation needs precomputed (its inverse norm).
#[derive(Debug, Clone)]
pub struct PreparedQuery {
    space: Space,
    vector: Vec<f32>,
    inv_norm: f32,
    /// The int8 code of the query ([`quant`]): traversal over coded stores scores against it.
    code: Vec<i8>,
}

impl PreparedQuery {
    /// Prepares `vector` for `space`; refuses NaN/infinite components (they order nothing).
    pub fn new(space: Space, vector: &[f32]) -> Result<PreparedQuery> {
        if vector.is_empty() {
            return Err(IndexError::InvalidParams("empty query vector".into()));
        }
        if !vector.iter().all(|x| x.is_finite()) {
            return Err(IndexError::InvalidParams(
                "query vector has a non-finite component".into(),
            ));
        }
        Ok(PreparedQuery {
            space,
            inv_norm: distance::inverse_norm(vector),
            vector: vector.to_vec(),
            code: quant::encode(space, vector),
        })
    }

    /// The distance space.
    #[inline]
    pub fn space(&self) -> Space {
        self.space
    }

    /// The query's components, as given.
    #[inline]
    pub fn vector(&self) -> &[f32] {
        &self.vector
    }

    /// `distance::inverse_norm` of the query.
    #[inline]
    pub fn inv_norm(&self) -> f32 {
        self.inv_norm
    }

    /// The query's int8 code (see [`quant`]).
    #[inline]
    pub fn code(&self) -> &[i8] {
        &self.code
    }

    /// The query's code against codes made by `coder`: [`Self::code`] when it has no centre
    /// (no work), else coded relative to the centre (once per source searched).
    pub fn code_for(&self, coder: &quant::Coder) -> Cow<'_, [i8]> {
        if coder.centre().is_none() && coder.space() == self.space {
            Cow::Borrowed(&self.code)
        } else {
            Cow::Owned(coder.encode(&self.vector))
        }
    }
}

/// Read access to the vectors a graph was built over, addressed by dense point id.
/// `Sync` so one store serves parallel queries.
pub trait VectorStore: Sync {
    /// Components per vector.
    fn dim(&self) -> usize;
    /// Number of rows (valid ids are `0..len`).
    fn len(&self) -> usize;
    /// Whether the store holds no rows.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Chroma distance from `q` to row `id` in `q.space()`. Must not panic: an id out of range
    /// scores `f32::INFINITY` (the searcher never asks for one).
    fn distance(&self, q: &PreparedQuery, id: u32) -> f32;
    /// Hint that row `id` will be scored soon (software prefetch). Default: nothing.
    #[inline]
    fn prefetch(&self, _id: u32) {}
}

/// Row-major f32 vectors in one slice (e.g. a mapped `vectors.bin`), plus optional per-row
/// inverse norms for cosine (computed on the fly when absent, at two extra dot products).
#[derive(Debug, Clone, Copy)]
pub struct F32Vectors<'a> {
    dim: usize,
    len: usize,
    data: &'a [f32],
    inv_norms: Option<&'a [f32]>,
}

impl<'a> F32Vectors<'a> {
    /// Wraps `data` (`len × dim` floats); `inv_norms`, if given, has one entry per row.
    pub fn new(dim: usize, data: &'a [f32], inv_norms: Option<&'a [f32]>) -> Result<Self> {
        if dim == 0 || !data.len().is_multiple_of(dim) {
            return Err(IndexError::InvalidParams(format!(
                "vector data of {} floats is not a whole number of {dim}-d rows",
                data.len()
            )));
        }
        let len = data.len() / dim;
        if len > u32::MAX as usize {
            return Err(IndexError::InvalidParams(
                "more rows than u32 ids".to_string(),
            ));
        }
        if let Some(n) = inv_norms {
            if n.len() != len {
                return Err(IndexError::InvalidParams(format!(
                    "{} inverse norms for {len} rows",
                    n.len()
                )));
            }
        }
        Ok(F32Vectors {
            dim,
            len,
            data,
            inv_norms,
        })
    }

    /// A store with no rows.
    pub fn empty() -> F32Vectors<'static> {
        F32Vectors {
            dim: 1,
            len: 0,
            data: &[],
            inv_norms: None,
        }
    }

    /// Row `id`, if in range.
    #[inline]
    pub fn row(&self, id: u32) -> Option<&'a [f32]> {
        let start = (id as usize).checked_mul(self.dim)?;
        self.data.get(start..start + self.dim)
    }
}

impl VectorStore for F32Vectors<'_> {
    #[inline]
    fn dim(&self) -> usize {
        self.dim
    }

    #[inline]
    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn distance(&self, q: &PreparedQuery, id: u32) -> f32 {
        let Some(v) = self.row(id) else {
            return f32::INFINITY;
        };
        let v_inv = match q.space {
            Space::Cosine => match self.inv_norms {
                Some(n) => n.get(id as usize).copied().unwrap_or(0.0),
                None => distance::inverse_norm(v),
            },
            _ => 0.0,
        };
        distance::distance(q.space, &q.vector, v, q.inv_norm, v_inv)
    }

    #[inline]
    fn prefetch(&self, id: u32) {
        if let Some(v) = self.row(id) {
            prefetch_slice(v);
        }
    }
}

/// int8 codes ([`quant`]) of row-major vectors, one code every `stride` bytes (a mapped
/// `codes.bin` section or a memtable's array): scores are approximate, for graph traversal;
/// callers rescore the final candidates from the f32 vectors.
#[derive(Debug, Clone, Copy)]
pub struct I8Vectors<'a> {
    dim: usize,
    len: usize,
    stride: usize,
    data: &'a [i8],
}

impl<'a> I8Vectors<'a> {
    /// Wraps `len` codes of `dim` components, `stride` bytes apart (`stride ≥ code_len(dim)`).
    pub fn new(dim: usize, len: usize, stride: usize, data: &'a [i8]) -> Result<Self> {
        let need = len.checked_mul(stride);
        if dim == 0 || stride < quant::code_len(dim) || need.is_none_or(|b| b > data.len()) {
            return Err(IndexError::InvalidParams(format!(
                "{len} codes of {dim} components at stride {stride} do not fit {} bytes",
                data.len()
            )));
        }
        Ok(I8Vectors {
            dim,
            len,
            stride,
            data,
        })
    }

    /// Row `id`'s code (components + trailer), if in range.
    #[inline]
    pub fn row(&self, id: u32) -> Option<&'a [i8]> {
        if id as usize >= self.len {
            return None;
        }
        let start = id as usize * self.stride;
        self.data.get(start..start + quant::code_len(self.dim))
    }
}

impl VectorStore for I8Vectors<'_> {
    #[inline]
    fn dim(&self) -> usize {
        self.dim
    }

    #[inline]
    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn distance(&self, q: &PreparedQuery, id: u32) -> f32 {
        match self.row(id) {
            Some(c) => quant::approx_distance(q.space, &q.code, c),
            None => f32::INFINITY,
        }
    }

    #[inline]
    fn prefetch(&self, id: u32) {
        if let Some(c) = self.row(id) {
            prefetch_bytes(bytemuck::cast_slice(c), 32);
        }
    }
}

/// Prefetches the first cache lines of `v` (at most 8: the hardware stream prefetcher takes
/// over after a few misses on a long vector).
#[inline(always)]
pub fn prefetch_slice(v: &[f32]) {
    prefetch_bytes(bytemuck::cast_slice(v), 8);
}

/// Prefetches the first cache lines of `v`, at most `max_lines` (the stream prefetcher takes
/// over a long f32 row after a few; a 1536-d code is only 25 lines, worth fetching whole).
#[inline(always)]
pub fn prefetch_bytes(v: &[u8], max_lines: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let bytes = v.len();
        let lines = bytes.div_ceil(64).min(max_lines);
        let p = v.as_ptr() as *const i8;
        for i in 0..lines {
            // SAFETY: prefetch is a hint that never faults; the address stays within `v`
            // (i * 64 < bytes), so the pointer arithmetic itself is in bounds.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.add(i * 64)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (v, max_lines);
    }
}

/// Asks the kernel to start reading the pages under `v` (`MADV_WILLNEED`) without waiting:
/// for mapped file data about to be touched, so several page faults' reads overlap. A hint
/// only — failures are ignored, and on heap memory it does nothing useful but no harm.
pub fn advise_will_need(v: &[u8]) {
    #[cfg(unix)]
    {
        static PAGE: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
            // SAFETY: sysconf has no preconditions.
            let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            usize::try_from(p)
                .ok()
                .filter(|p| p.is_power_of_two())
                .unwrap_or(4096)
        });
        if v.is_empty() {
            return;
        }
        let start = v.as_ptr() as usize & !(*PAGE - 1);
        let end = v.as_ptr() as usize + v.len();
        // SAFETY: MADV_WILLNEED never changes the contents or protection of memory; the range
        // starts at the page holding `v` and ends at its last byte, all mapped (a page is
        // mapped as a whole), and an unmapped or unsupported range only returns an error.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_WILLNEED);
        }
    }
    #[cfg(not(unix))]
    {
        let _ = v;
    }
}

/// Views little-endian f32 bytes (e.g. a mapped file section) as `&[f32]` without copying.
/// `None` if the slice is not 4-byte aligned or not a whole number of floats, or on a
/// big-endian target (where the bytes would need swapping).
pub fn f32_slice_from_bytes(bytes: &[u8]) -> Option<&[f32]> {
    if cfg!(target_endian = "big") || !bytes.len().is_multiple_of(4) {
        return None;
    }
    // SAFETY: every bit pattern is a valid f32, and `align_to` only returns a middle part that
    // is correctly aligned for f32; we accept the result only if nothing was left over.
    let (head, mid, tail) = unsafe { bytes.align_to::<f32>() };
    if head.is_empty() && tail.is_empty() {
        Some(mid)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_matches_kernel_distance() {
        let data = [1.0f32, 0.0, 0.0, 2.0, 3.0, 4.0];
        let inv: Vec<f32> = data.chunks(2).map(distance::inverse_norm).collect();
        let s = F32Vectors::new(2, &data, Some(&inv)).unwrap();
        let s2 = F32Vectors::new(2, &data, None).unwrap();
        for space in [Space::L2, Space::Cosine, Space::Ip] {
            let q = PreparedQuery::new(space, &[0.5, -1.0]).unwrap();
            for id in 0..3u32 {
                let v = s.row(id).unwrap();
                let want = distance::distance(space, q.vector(), v, q.inv_norm(), inv[id as usize]);
                assert_eq!(s.distance(&q, id), want);
                assert_eq!(s2.distance(&q, id), want);
            }
            assert_eq!(s.distance(&q, 3), f32::INFINITY);
            assert_eq!(s.distance(&q, u32::MAX), f32::INFINITY);
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(F32Vectors::new(0, &[], None).is_err());
        assert!(F32Vectors::new(2, &[1.0; 3], None).is_err());
        assert!(F32Vectors::new(2, &[1.0; 4], Some(&[1.0])).is_err());
        assert!(PreparedQuery::new(Space::L2, &[f32::NAN]).is_err());
        assert!(PreparedQuery::new(Space::L2, &[]).is_err());
    }

    #[test]
    fn byte_view_needs_alignment() {
        let v = [1.0f32, 2.0, 3.0];
        // SAFETY (test): viewing an f32 Vec's storage as bytes.
        let bytes = unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, v.len() * 4) };
        assert_eq!(f32_slice_from_bytes(bytes), Some(&v[..]));
        assert_eq!(f32_slice_from_bytes(&bytes[1..5]), None);
        assert_eq!(f32_slice_from_bytes(&bytes[..5]), None);
    }
}
