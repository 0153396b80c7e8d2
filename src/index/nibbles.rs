//! Nibble-split int8 codes: a graph walk reads half a code's bytes.
//!
//! A walk over int8 codes is bound by memory, not arithmetic: on real100k a query reads
//! ~1,500 random 1.5 KiB codes, and a C micro-benchmark reads 1,500 random rows in ~300 µs at
//! 1,544 B against ~160–240 µs at 776 B on the same machine. So a code's components are stored
//! as two planes of 4-bit nibbles of `u = c + 128` (`c` the int8 component): the high plane
//! alone is a 4-bit code of the same vector (`c ≈ 16·hi + 7.5 − 128`, step 16 of the int8
//! scale) that the walk ranks candidates with; both planes together give back `c` exactly, for
//! the exact int8 scans and for seeding a graph builder. A row thus costs the same bytes as
//! before and the walk's shortlist is still rescored in f32.
//!
//! # Plane layout
//! A plane of a `dim`-component code is `dim.div_ceil(2)` bytes (`half`): byte `j` holds
//! component `j` in its low nibble and component `half + j` in its high nibble (0 past `dim`).
//! So a SIMD step unpacks 64 bytes into two runs of 64 consecutive components, each matched
//! against a contiguous slice of the query: no shuffles.

/// Bytes of one nibble plane for `dim` components.
#[inline]
pub fn plane_len(dim: usize) -> usize {
    dim.div_ceil(2)
}

/// Appends the high and the low plane of int8 components `codes` to `hi` and `lo`.
pub fn split_into(codes: &[i8], hi: &mut Vec<u8>, lo: &mut Vec<u8>) {
    let half = plane_len(codes.len());
    let u = |i: usize| codes.get(i).map_or(0, |&c| (c as i16 + 128) as u8);
    // Past `dim` the nibble is 0; queries have no component there, so it never counts.
    for j in 0..half {
        let (a, b) = (
            u(j),
            if half + j < codes.len() {
                u(half + j)
            } else {
                0
            },
        );
        hi.push((a >> 4) | (b & 0xF0));
        lo.push((a & 0x0F) | (b << 4));
    }
}

/// The int8 components back from both planes, one per element of `out` (the code's `dim`).
pub fn join(hi: &[u8], lo: &[u8], out: &mut [i8]) {
    let half = plane_len(out.len());
    for (i, c) in out.iter_mut().enumerate() {
        let (j, shift) = if i < half { (i, 0) } else { (i - half, 4) };
        let h = hi.get(j).map_or(0, |b| (b >> shift) & 0x0F);
        let l = lo.get(j).map_or(0, |b| (b >> shift) & 0x0F);
        *c = ((h as i16) * 16 + l as i16 - 128) as i8;
    }
}

/// `Σ qᵢ·nᵢ` over a plane's nibbles `nᵢ` (0..=15) and the query's int8 components; `q.len()` is
/// the code's `dim`, `plane` at least [`plane_len`] of it (shorter: the missing nibbles are 0).
#[inline]
pub fn dot_plane(q: &[i8], plane: &[u8]) -> i32 {
    (KERNEL.1)(q, plane)
}

/// Approximate `Σ qᵢ·cᵢ` from the high plane alone: `16·Σ qᵢ·hiᵢ + (7.5 − 128)·Σ qᵢ`, with
/// `q_sum = Σ qᵢ` computed once per query.
#[inline]
pub fn approx_dot(q: &[i8], q_sum: i32, hi: &[u8]) -> f32 {
    16.0 * dot_plane(q, hi) as f32 - 120.5 * q_sum as f32
}

/// Exact `Σ qᵢ·cᵢ` from both planes (the int8 dot product of the joined code).
#[inline]
pub fn exact_dot(q: &[i8], q_sum: i32, hi: &[u8], lo: &[u8]) -> i32 {
    16 * dot_plane(q, hi) + dot_plane(q, lo) - 128 * q_sum
}

/// `Σ qᵢ`, the per-query constant of [`approx_dot`] and [`exact_dot`].
pub fn sum(q: &[i8]) -> i32 {
    q.iter().map(|&x| x as i32).sum()
}

/// A plane dot kernel.
pub type PlaneKernel = fn(&[i8], &[u8]) -> i32;

/// Name of the plane kernel chosen for this CPU.
pub fn kernel_name() -> &'static str {
    KERNEL.0
}

/// Every plane kernel this CPU can run, best last (benchmarks and tests compare them).
pub fn available_kernels() -> Vec<(&'static str, PlaneKernel)> {
    let mut out: Vec<(&'static str, PlaneKernel)> = vec![("portable", dot_plane_portable)];
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            out.push(("avx2", x86::dot_avx2_checked));
        }
        if std::is_x86_feature_detected!("avx512bw") && std::is_x86_feature_detected!("avx512vnni")
        {
            out.push(("avx512vnni", x86::dot_vnni_checked));
        }
    }
    out
}

static KERNEL: std::sync::LazyLock<(&'static str, PlaneKernel)> = std::sync::LazyLock::new(|| {
    available_kernels()
        .pop()
        .unwrap_or(("portable", dot_plane_portable as PlaneKernel))
});

/// The scalar reference; also the tail of the SIMD kernels, from plane byte `from` on.
fn dot_plane_from(q: &[i8], plane: &[u8], from: usize) -> i32 {
    let half = plane_len(q.len());
    let (q_lo, q_hi) = q.split_at(half);
    let plane = &plane[..half.min(plane.len())];
    let from = from.min(plane.len());
    // Bytes with both nibbles in range (all but the last one of an odd `dim`): zipped slices,
    // which the compiler vectorises.
    let pairs = q_hi.len().min(plane.len());
    let mut sum: i32 = plane[from.min(pairs)..pairs]
        .iter()
        .zip(&q_lo[from.min(pairs)..pairs])
        .zip(&q_hi[from.min(pairs)..pairs])
        .map(|((&b, &l), &h)| l as i32 * (b & 0x0F) as i32 + h as i32 * (b >> 4) as i32)
        .sum();
    for j in from.max(pairs)..plane.len() {
        sum += q_lo[j] as i32 * (plane[j] & 0x0F) as i32;
    }
    sum
}

fn dot_plane_portable(q: &[i8], plane: &[u8]) -> i32 {
    dot_plane_from(q, plane, 0)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! Unpack 64 (AVX-512) or 32 (AVX2) plane bytes into their low and high nibbles and
    //! multiply them, as unsigned bytes, with the matching signed query bytes: `vpdpbusd` sums
    //! four u8·i8 products into each i32 lane; AVX2's `vpmaddubsw` sums pairs into i16 (at most
    //! 2·15·128, no saturation) and `vpmaddwd` by ones widens them.
    use super::{dot_plane_from, plane_len};
    use std::arch::x86_64::*;

    /// Plane bytes the SIMD loop may take: both query runs of a step must be whole.
    fn simd_bytes(q: &[i8], plane: &[u8], step: usize) -> usize {
        let half = plane_len(q.len());
        // The high run of the step at j reads q[half + j .. half + j + step].
        let by_query = q.len().saturating_sub(half);
        half.min(plane.len()).min(by_query) / step * step
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn dot_vnni(q: &[i8], plane: &[u8]) -> i32 {
        let half = plane_len(q.len());
        let end = simd_bytes(q, plane, 64);
        let (pq, pp) = (q.as_ptr(), plane.as_ptr());
        let mask = _mm512_set1_epi8(0x0F);
        let (mut acc0, mut acc1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        let mut j = 0;
        while j < end {
            // SAFETY: j + 64 <= end <= plane.len(), and j + 64 <= end <= q.len() - half, so
            // the plane load and both query loads (at j and half + j) are in bounds.
            let (x, ql, qh) = unsafe {
                (
                    _mm512_loadu_si512(pp.add(j) as *const _),
                    _mm512_loadu_si512(pq.add(j) as *const _),
                    _mm512_loadu_si512(pq.add(half + j) as *const _),
                )
            };
            let lo = _mm512_and_si512(x, mask);
            let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(x), mask);
            acc0 = _mm512_dpbusd_epi32(acc0, lo, ql);
            acc1 = _mm512_dpbusd_epi32(acc1, hi, qh);
            j += 64;
        }
        _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1)) + dot_plane_from(q, plane, end)
    }

    #[target_feature(enable = "avx2")]
    unsafe fn dot_avx2(q: &[i8], plane: &[u8]) -> i32 {
        let half = plane_len(q.len());
        let end = simd_bytes(q, plane, 32);
        let (pq, pp) = (q.as_ptr(), plane.as_ptr());
        let mask = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_si256();
        let mut j = 0;
        while j < end {
            // SAFETY: as in `dot_vnni`, with 32-byte steps.
            let (x, ql, qh) = unsafe {
                (
                    _mm256_loadu_si256(pp.add(j) as *const __m256i),
                    _mm256_loadu_si256(pq.add(j) as *const __m256i),
                    _mm256_loadu_si256(pq.add(half + j) as *const __m256i),
                )
            };
            let lo = _mm256_and_si256(x, mask);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(x), mask);
            let pairs =
                _mm256_add_epi16(_mm256_maddubs_epi16(lo, ql), _mm256_maddubs_epi16(hi, qh));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones));
            j += 32;
        }
        let s = _mm_add_epi32(
            _mm256_castsi256_si128(acc),
            _mm256_extracti128_si256::<1>(acc),
        );
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        _mm_cvtsi128_si32(s) + dot_plane_from(q, plane, end)
    }

    pub(super) fn dot_avx2_checked(q: &[i8], plane: &[u8]) -> i32 {
        // SAFETY: listed only after `is_x86_feature_detected!("avx2")`.
        unsafe { dot_avx2(q, plane) }
    }
    pub(super) fn dot_vnni_checked(q: &[i8], plane: &[u8]) -> i32 {
        // SAFETY: listed only after avx512bw and avx512vnni were detected.
        unsafe { dot_vnni(q, plane) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn codes(max_dim: usize) -> impl Strategy<Value = (Vec<i8>, Vec<i8>)> {
        (0usize..max_dim).prop_flat_map(|n| {
            (
                proptest::collection::vec(-127i8..=127, n),
                proptest::collection::vec(-128i8..=127, n),
            )
        })
    }

    proptest! {
        #[test]
        fn planes_join_back_to_the_code((c, _) in codes(400)) {
            let (mut hi, mut lo, mut back) = (Vec::new(), Vec::new(), vec![0i8; c.len()]);
            split_into(&c, &mut hi, &mut lo);
            prop_assert_eq!(hi.len(), plane_len(c.len()));
            join(&hi, &lo, &mut back);
            prop_assert_eq!(back, c);
        }

        #[test]
        fn kernels_agree_and_the_exact_dot_is_the_int8_dot((c, q) in codes(700)) {
            let (mut hi, mut lo) = (Vec::new(), Vec::new());
            split_into(&c, &mut hi, &mut lo);
            let want_hi: i32 = c
                .iter()
                .zip(&q)
                .map(|(&ci, &qi)| qi as i32 * (((ci as i16 + 128) as u16 >> 4) as i32))
                .sum();
            for (name, k) in available_kernels() {
                prop_assert_eq!(k(&q, &hi), want_hi, "{}", name);
            }
            let want: i32 = c.iter().zip(&q).map(|(&a, &b)| a as i32 * b as i32).sum();
            prop_assert_eq!(exact_dot(&q, sum(&q), &hi, &lo), want);
            // The high plane alone is off by at most 8 (of 16) per component.
            let err = (approx_dot(&q, sum(&q), &hi) - want as f32).abs();
            let bound: f32 = q.iter().map(|&x| (x as f32).abs() * 8.0).sum();
            prop_assert!(err <= bound + 1e-3, "err {} bound {}", err, bound);
        }
    }
}
