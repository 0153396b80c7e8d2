//! int8 scalar quantization: the compact form graph traversal runs on, 4× fewer bytes per
//! distance than f32, with exact f32 rescoring of the final candidates by the caller.
//!
//! # Code layout
//! A vector's code is `dim` signed bytes followed by a trailer of two little-endian f32:
//! `scale` (component ≈ code · scale) and `sqnorm` (the exact ‖v‖² of the original vector,
//! used by l2). Cosine codes quantize the unit vector `v/‖v‖`, so one integer dot product
//! approximates the cosine directly. The scale is per vector (symmetric, `max |vᵢ| / 127`): no
//! training set, no drift between the memtable (coded on insert) and a segment (coded at
//! flush or compaction), and the same bytes serve the graph builder and the mapped searcher.
//!
//! # Centred codes (l2, ip)
//! A per-vector scale spends its 8 bits on the vector's largest component. Data far from the
//! origin (every vector = μ + a small spread, as many embedding sets are not centred) would
//! spend them on μ, and l2's ‖a‖² + ‖b‖² − 2a·b would cancel two large numbers: recall@10 fell
//! to 0.5–0.8 on such data. So a [`Coder`] for l2 or ip codes `x − μ` against a centre μ chosen
//! per graph (a memtable's, stored in its segment's `codes.bin`), with the trailer word
//! `‖x − μ‖²` for l2 (distances are translation-invariant) and `(x − μ)·μ + ‖μ‖²/2` for ip, so
//! that `a·b = (a−μ)·(b−μ) + t_a + t_b` exactly. Queries are coded against the same centre
//! ([`crate::index::PreparedQuery::code_for`]). Cosine codes unit vectors and has no centre;
//! l2/ip codes without one (segments from before centring) are the same formulas with μ = 0.
//!
//! The approximate distance has Chroma's shape (`1 − a·b` for cosine and ip, ‖a‖² + ‖b‖² − 2a·b
//! for l2) so it orders candidates like the real one; it is never reported to users.
//!
//! The integer dot product is AVX-512 VNNI, AVX-512BW or AVX2 chosen at run time (like
//! [`crate::index::distance`]), with a portable fallback; all give the same exact `i32`.

use std::sync::{Arc, LazyLock};

use crate::index::distance;
use crate::types::Space;

/// Bytes after the codes: `scale` and a space-specific word (see the module docs),
/// little-endian f32.
pub const TRAILER: usize = 8;

/// Largest code magnitude (symmetric: −127..=127, so negation never overflows).
const MAX_CODE: f32 = 127.0;

/// Length of a vector's code: `dim` bytes plus the trailer.
#[inline]
pub fn code_len(dim: usize) -> usize {
    dim + TRAILER
}

/// The symmetric scale for components up to `max` in magnitude, and its inverse; both 0 for a
/// zero or non-finite `max` (every code 0).
fn scale_for(max: f32) -> (f32, f32) {
    let scale = if max.is_finite() && max > 0.0 {
        max / MAX_CODE
    } else {
        0.0
    };
    (scale, if scale > 0.0 { 1.0 / scale } else { 0.0 })
}

/// Appends the code of `v` (for `space`) to `out`. Non-finite or zero vectors get scale 0
/// (every code 0), which scores as distance 1 for cosine/ip, like Chroma's zero vector.
pub fn encode_into(space: Space, v: &[f32], out: &mut Vec<i8>) {
    let unit = match space {
        Space::Cosine => distance::inverse_norm(v),
        Space::L2 | Space::Ip => 1.0,
    };
    let (scale, inv) = scale_for(v.iter().fold(0.0f32, |m, x| m.max((x * unit).abs())));
    out.reserve(code_len(v.len()));
    out.extend(
        v.iter()
            .map(|x| (x * unit * inv).round().clamp(-MAX_CODE, MAX_CODE) as i8),
    );
    let sqnorm = match space {
        Space::L2 => distance::dot(v, v),
        Space::Cosine | Space::Ip => 0.0,
    };
    for b in scale.to_le_bytes().into_iter().chain(sqnorm.to_le_bytes()) {
        out.push(b as i8);
    }
}

/// The code of `v` as a new vector.
pub fn encode(space: Space, v: &[f32]) -> Vec<i8> {
    let mut out = Vec::with_capacity(code_len(v.len()));
    encode_into(space, v, &mut out);
    out
}

/// Splits a code into its components and `(scale, sqnorm)`; `None` if shorter than the trailer.
#[inline]
pub fn split(code: &[i8]) -> Option<(&[i8], f32, f32)> {
    let at = code.len().checked_sub(TRAILER)?;
    let (codes, t) = code.split_at(at);
    let word =
        |i: usize| f32::from_le_bytes([t[i] as u8, t[i + 1] as u8, t[i + 2] as u8, t[i + 3] as u8]);
    Some((codes, word(0), word(4)))
}

/// Approximate distance between two codes of the same space and length (the common prefix is
/// used otherwise). Finite for finite inputs; ordering-only, never reported.
#[inline]
pub fn approx_distance(space: Space, a: &[i8], b: &[i8]) -> f32 {
    let (Some((ca, sa, na)), Some((cb, sb, nb))) = (split(a), split(b)) else {
        return f32::INFINITY;
    };
    distance_from_dot(space, dot_i8(ca, cb) as f32, (sa, na), (sb, nb))
}

/// The approximate distance from `dot`, a dot product of two codes' integer components (exact
/// or estimated), and each code's `(scale, word)` trailer.
#[inline]
pub fn distance_from_dot(
    space: Space,
    dot: f32,
    (sa, na): (f32, f32),
    (sb, nb): (f32, f32),
) -> f32 {
    let dot = dot * sa * sb;
    match space {
        Space::Cosine => 1.0 - dot,
        // The trailer words are 0 for codes without a centre.
        Space::Ip => 1.0 - (dot + na + nb),
        Space::L2 => (na + nb - 2.0 * dot).max(0.0),
    }
}

/// How a graph's vectors become codes: the space and, for l2 and ip, the centre codes are
/// taken relative to (module docs). Cheap to clone (the centre is shared).
#[derive(Debug, Clone, PartialEq)]
pub struct Coder {
    space: Space,
    /// `None`: the vectors are coded as they are (always for cosine).
    centre: Option<Arc<[f32]>>,
    /// `‖μ‖² / 2`, folded into every ip trailer.
    half_sqnorm: f32,
}

impl Coder {
    /// Codes of the vectors as given, no centre (cosine, and l2/ip codes from before centring).
    pub fn plain(space: Space) -> Coder {
        Coder {
            space,
            centre: None,
            half_sqnorm: 0.0,
        }
    }

    /// Codes relative to `centre` for l2 and ip. Cosine ignores it (its codes are of unit
    /// vectors), and so does a centre with a non-finite component or norm.
    pub fn centred(space: Space, centre: &[f32]) -> Coder {
        let sqnorm = distance::dot(centre, centre);
        if space == Space::Cosine || centre.is_empty() || !sqnorm.is_finite() {
            return Coder::plain(space);
        }
        Coder {
            space,
            centre: Some(centre.into()),
            half_sqnorm: sqnorm / 2.0,
        }
    }

    /// The distance space.
    #[inline]
    pub fn space(&self) -> Space {
        self.space
    }

    /// The centre, if codes are taken relative to one.
    #[inline]
    pub fn centre(&self) -> Option<&[f32]> {
        self.centre.as_deref()
    }

    /// Appends the code of `v` to `out` (`v` has the centre's length when there is one).
    pub fn encode_into(&self, v: &[f32], out: &mut Vec<i8>) {
        let Some(mu) = self.centre.as_deref() else {
            return encode_into(self.space, v, out);
        };
        let residual = || v.iter().zip(mu).map(|(x, m)| x - m);
        let (scale, inv) = scale_for(residual().fold(0.0f32, |m, r| m.max(r.abs())));
        out.reserve(code_len(v.len()));
        out.extend(residual().map(|r| (r * inv).round().clamp(-MAX_CODE, MAX_CODE) as i8));
        let word = match self.space {
            Space::L2 => residual().map(|r| r * r).sum::<f32>(),
            Space::Ip => residual().zip(mu).map(|(r, m)| r * m).sum::<f32>() + self.half_sqnorm,
            Space::Cosine => 0.0,
        };
        for b in scale.to_le_bytes().into_iter().chain(word.to_le_bytes()) {
            out.push(b as i8);
        }
    }

    /// The code of `v` as a new vector.
    pub fn encode(&self, v: &[f32]) -> Vec<i8> {
        let mut out = Vec::with_capacity(code_len(v.len()));
        self.encode_into(v, &mut out);
        out
    }
}

/// Exact `Σ aᵢ·bᵢ` over the common prefix, with the fastest kernel this CPU has.
#[inline]
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    (KERNEL.1)(a, b)
}

/// Name of the int8 kernel chosen for this CPU.
pub fn kernel_name() -> &'static str {
    KERNEL.0
}

/// An int8 dot kernel.
pub type I8Kernel = fn(&[i8], &[i8]) -> i32;

/// Every int8 kernel this CPU can run, best last (benchmarks and tests compare them).
pub fn available_kernels() -> Vec<(&'static str, I8Kernel)> {
    let mut out: Vec<(&'static str, I8Kernel)> = vec![("portable", dot_i8_portable)];
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            out.push(("avx2", x86::dot_avx2_checked));
        }
        if std::is_x86_feature_detected!("avx512bw") {
            out.push(("avx512bw", x86::dot_avx512bw_checked));
            if std::is_x86_feature_detected!("avx512vnni") {
                out.push(("avx512vnni", x86::dot_vnni_checked));
            }
        }
    }
    out
}

static KERNEL: LazyLock<(&'static str, I8Kernel)> = LazyLock::new(|| {
    available_kernels()
        .pop()
        .unwrap_or(("portable", dot_i8_portable as I8Kernel))
});

fn dot_i8_portable(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    // i16 products summed in i32 lanes: the compiler vectorises this into pmaddwd.
    let mut acc = [0i32; 16];
    let mut ca = a.chunks_exact(16);
    let mut cb = b.chunks_exact(16);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..16 {
            acc[i] += x[i] as i32 * y[i] as i32;
        }
    }
    let tail: i32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| *x as i32 * *y as i32)
        .sum();
    acc.iter().sum::<i32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! Sign-extend 32 bytes to 16-bit lanes, multiply-add pairs into 32-bit lanes (`vpmaddwd`,
    //! or `vpdpwssd` with VNNI, which fuses the add). Products of two codes fit in i16·i16 →
    //! i32 pairs without overflow (2·127² < 2³¹), and 1536-d sums stay far below i32::MAX.
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2")]
    unsafe fn dot_avx2(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_si256();
        let mut acc1 = _mm256_setzero_si256();
        let mut i = 0;
        while i + 32 <= n {
            // SAFETY: i + 32 <= n, so both 16-byte loads at i and i + 16 are in bounds.
            let (x0, y0, x1, y1) = unsafe {
                (
                    _mm_loadu_si128(pa.add(i) as *const __m128i),
                    _mm_loadu_si128(pb.add(i) as *const __m128i),
                    _mm_loadu_si128(pa.add(i + 16) as *const __m128i),
                    _mm_loadu_si128(pb.add(i + 16) as *const __m128i),
                )
            };
            acc0 = _mm256_add_epi32(
                acc0,
                _mm256_madd_epi16(_mm256_cvtepi8_epi16(x0), _mm256_cvtepi8_epi16(y0)),
            );
            acc1 = _mm256_add_epi32(
                acc1,
                _mm256_madd_epi16(_mm256_cvtepi8_epi16(x1), _mm256_cvtepi8_epi16(y1)),
            );
            i += 32;
        }
        let v = _mm256_add_epi32(acc0, acc1);
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        let mut sum = _mm_cvtsi128_si32(s);
        for j in i..n {
            sum += a[j] as i32 * b[j] as i32;
        }
        sum
    }

    macro_rules! kernel_avx512 {
        ($name:ident, $features:literal, |$acc:ident, $x:ident, $y:ident| $step:expr) => {
            #[target_feature(enable = $features)]
            unsafe fn $name(a: &[i8], b: &[i8]) -> i32 {
                let n = a.len().min(b.len());
                let (pa, pb) = (a.as_ptr(), b.as_ptr());
                let mut accs = [_mm512_setzero_si512(); 2];
                let mut i = 0;
                while i + 64 <= n {
                    for (k, $acc) in accs.iter_mut().enumerate() {
                        // SAFETY: i + 32k + 32 <= i + 64 <= n: both loads are in bounds.
                        let ($x, $y) = unsafe {
                            (
                                _mm512_cvtepi8_epi16(_mm256_loadu_si256(
                                    pa.add(i + 32 * k) as *const __m256i
                                )),
                                _mm512_cvtepi8_epi16(_mm256_loadu_si256(
                                    pb.add(i + 32 * k) as *const __m256i
                                )),
                            )
                        };
                        *$acc = $step;
                    }
                    i += 64;
                }
                let mut sum = _mm512_reduce_add_epi32(_mm512_add_epi32(accs[0], accs[1]));
                for j in i..n {
                    sum += a[j] as i32 * b[j] as i32;
                }
                sum
            }
        };
    }

    kernel_avx512!(dot_avx512bw, "avx512f,avx512bw", |acc, x, y| {
        _mm512_add_epi32(*acc, _mm512_madd_epi16(x, y))
    });
    kernel_avx512!(dot_vnni, "avx512f,avx512bw,avx512vnni", |acc, x, y| {
        _mm512_dpwssd_epi32(*acc, x, y)
    });

    pub(super) fn dot_avx2_checked(a: &[i8], b: &[i8]) -> i32 {
        // SAFETY: listed only after `is_x86_feature_detected!("avx2")`.
        unsafe { dot_avx2(a, b) }
    }
    pub(super) fn dot_avx512bw_checked(a: &[i8], b: &[i8]) -> i32 {
        // SAFETY: listed only after `is_x86_feature_detected!("avx512bw")` (implies avx512f).
        unsafe { dot_avx512bw(a, b) }
    }
    pub(super) fn dot_vnni_checked(a: &[i8], b: &[i8]) -> i32 {
        // SAFETY: listed only after avx512bw and avx512vnni were detected.
        unsafe { dot_vnni(a, b) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn kernels_agree_exactly(
            pairs in (0usize..400).prop_flat_map(|n| (
                proptest::collection::vec(-127i8..=127, n),
                proptest::collection::vec(-127i8..=127, n),
            ))
        ) {
            let (a, b) = pairs;
            let want: i32 = a.iter().zip(&b).map(|(x, y)| *x as i32 * *y as i32).sum();
            for (name, k) in available_kernels() {
                prop_assert_eq!(k(&a, &b), want, "{}", name);
            }
            prop_assert_eq!(dot_i8(&a, &b), want);
        }

        #[test]
        fn approx_tracks_exact(
            a in proptest::collection::vec(-3.0f32..3.0, 64),
            b in proptest::collection::vec(-3.0f32..3.0, 64),
        ) {
            for space in [Space::Cosine, Space::L2, Space::Ip] {
                let (ia, ib) = (distance::inverse_norm(&a), distance::inverse_norm(&b));
                let exact = distance::distance(space, &a, &b, ia, ib);
                let approx = approx_distance(space, &encode(space, &a), &encode(space, &b));
                // Per-component error ≤ scale/2 on each side: a few percent of the norms here.
                let scale = match space {
                    Space::Cosine => 1.0,
                    _ => distance::dot(&a, &a).sqrt() * distance::dot(&b, &b).sqrt() + 1.0,
                };
                prop_assert!((approx - exact).abs() <= 0.05 * scale, "{:?} {} vs {}", space, approx, exact);
            }
        }
    }

    /// Offset data: plain l2 codes lose the neighbour ordering to rounding, centred codes
    /// keep it; and the centred formulas equal the exact ones up to rounding of the residuals.
    #[test]
    fn centred_codes_keep_resolution_far_from_the_origin() {
        let dim = 64;
        let mu: Vec<f32> = (0..dim).map(|i| 20.0 + (i % 7) as f32).collect();
        let at = |seed: u32, spread: f32| -> Vec<f32> {
            (0..dim)
                .map(|i| mu[i] + spread * (((seed * 31 + i as u32 * 17) % 101) as f32 / 50.0 - 1.0))
                .collect()
        };
        let (q, a, b) = (at(1, 0.5), at(2, 0.5), at(3, 0.5));
        for space in [Space::L2, Space::Ip] {
            let coder = Coder::centred(space, &mu);
            let (cq, ca, cb) = (coder.encode(&q), coder.encode(&a), coder.encode(&b));
            for (x, cx) in [(&a, &ca), (&b, &cb)] {
                let exact = distance::distance(space, &q, x, 0.0, 0.0);
                let approx = approx_distance(space, &cq, cx);
                // The residuals are ≤ 0.5 per component: rounding costs far less than 0.5.
                assert!(
                    (approx - exact).abs() < 0.5,
                    "{space:?}: {approx} vs {exact}"
                );
            }
            // Plain codes of the same points: the common part swamps the l2 differences.
            let plain = Coder::plain(space);
            assert_eq!(plain.encode(&q), encode(space, &q));
        }
        // Summed over several points, so no single lucky rounding decides it.
        let err = |coder: &Coder| -> f32 {
            let cq = coder.encode(&q);
            (4..12)
                .map(|seed| {
                    let x = at(seed, 0.5);
                    let exact = distance::distance(Space::L2, &q, &x, 0.0, 0.0);
                    (approx_distance(Space::L2, &cq, &coder.encode(&x)) - exact).abs()
                })
                .sum()
        };
        let (plain_err, centred_err) = (
            err(&Coder::plain(Space::L2)),
            err(&Coder::centred(Space::L2, &mu)),
        );
        assert!(
            centred_err * 20.0 < plain_err,
            "{centred_err} vs {plain_err}"
        );
        // Cosine never centres; nor does a non-finite centre.
        assert!(Coder::centred(Space::Cosine, &mu).centre().is_none());
        assert!(Coder::centred(Space::L2, &[f32::NAN, 1.0])
            .centre()
            .is_none());
    }

    #[test]
    fn zero_and_odd_inputs_never_panic() {
        let z = encode(Space::Cosine, &[0.0; 5]);
        assert_eq!(z.len(), code_len(5));
        assert_eq!(approx_distance(Space::Cosine, &z, &z), 1.0);
        let inf = encode(Space::L2, &[f32::INFINITY, 1.0]);
        assert!(split(&inf).is_some());
        assert_eq!(approx_distance(Space::L2, &[1, 2], &[1]), f32::INFINITY);
        let ip = encode(Space::Ip, &[2.0, -1.0]);
        let (codes, scale, _) = split(&ip).unwrap();
        assert_eq!(codes, &[127, -64]);
        assert!((scale - 2.0 / 127.0).abs() < 1e-7);
    }
}
