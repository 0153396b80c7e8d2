//! Distance kernels over f32 slices, with Chroma's definitions (§6 of the wire contract):
//! `l2` = squared Euclidean, `cosine` = 1 − a·b/(‖a‖‖b‖), `ip` = 1 − a·b, all in f32.
//!
//! The kernels are written as 16 independent lanes so the compiler vectorises them without
//! reassociating floating-point sums; on x86-64 a second copy compiled for AVX2+FMA is chosen at
//! run time, so one binary runs everywhere and uses the wide units where they exist.

use std::sync::LazyLock;

use crate::types::Space;

const LANES: usize = 16;

/// Chroma adds this to a norm before dividing, so zero vectors give distance 1, not NaN.
const NORM_EPSILON: f32 = 1e-32;

#[inline(always)]
fn dot_lanes<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..LANES {
            acc[i] = if FMA {
                x[i].mul_add(y[i], acc[i])
            } else {
                acc[i] + x[i] * y[i]
            };
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    reduce(acc) + tail
}

#[inline(always)]
fn l2sq_lanes<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..LANES {
            let d = x[i] - y[i];
            acc[i] = if FMA {
                d.mul_add(d, acc[i])
            } else {
                acc[i] + d * d
            };
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        let d = x - y;
        tail += d * d;
    }
    reduce(acc) + tail
}

#[inline(always)]
fn reduce(acc: [f32; LANES]) -> f32 {
    // Pairwise, so the result does not depend on which copy of the kernel ran more than needed.
    let mut v = acc;
    let mut w = LANES;
    while w > 1 {
        w /= 2;
        for i in 0..w {
            v[i] += v[i + w];
        }
    }
    v[0]
}

type Kernel = fn(&[f32], &[f32]) -> f32;

struct Kernels {
    dot: Kernel,
    l2sq: Kernel,
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        super::dot_lanes::<true>(a, b)
    }
    #[target_feature(enable = "avx2,fma")]
    unsafe fn l2sq(a: &[f32], b: &[f32]) -> f32 {
        super::l2sq_lanes::<true>(a, b)
    }
    pub(super) fn dot_checked(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: this function is only selected after `is_x86_feature_detected!` confirmed
        // AVX2 and FMA on the running CPU.
        unsafe { dot(a, b) }
    }
    pub(super) fn l2sq_checked(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: as above, selected only when AVX2 and FMA are present.
        unsafe { l2sq(a, b) }
    }
}

fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes::<false>(a, b)
}

fn l2sq_portable(a: &[f32], b: &[f32]) -> f32 {
    l2sq_lanes::<false>(a, b)
}

static KERNELS: LazyLock<Kernels> = LazyLock::new(|| {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        return Kernels {
            dot: avx2::dot_checked,
            l2sq: avx2::l2sq_checked,
        };
    }
    Kernels {
        dot: dot_portable,
        l2sq: l2sq_portable,
    }
});

/// Dot product of the common prefix of `a` and `b`.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    (KERNELS.dot)(a, b)
}

/// Squared Euclidean distance of the common prefix of `a` and `b`.
#[inline]
pub fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    (KERNELS.l2sq)(a, b)
}

/// `1 / (‖v‖ + 1e-32)`: the factor Chroma normalises a vector with for cosine distance.
#[inline]
pub fn inverse_norm(v: &[f32]) -> f32 {
    1.0 / (dot(v, v).sqrt() + NORM_EPSILON)
}

/// Distance between a query and a stored vector in `space`; `inv_norms` are the two vectors'
/// [`inverse_norm`]s (only read for cosine).
#[inline]
pub fn distance(space: Space, q: &[f32], v: &[f32], q_inv_norm: f32, v_inv_norm: f32) -> f32 {
    match space {
        Space::L2 => l2sq(q, v),
        Space::Ip => 1.0 - dot(q, v),
        Space::Cosine => 1.0 - dot(q, v) * q_inv_norm * v_inv_norm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive_dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
    }

    #[test]
    fn chroma_examples() {
        // §6: [0.5,1,1] vs [1,2,3] is 5.25 in l2.
        assert_eq!(l2sq(&[0.5, 1.0, 1.0], &[1.0, 2.0, 3.0]), 5.25);
        let q = [1.0, 0.0, 0.0];
        let v = [0.0, 1.0, 0.0];
        assert_eq!(
            distance(Space::Cosine, &q, &v, inverse_norm(&q), inverse_norm(&v)),
            1.0
        );
        assert_eq!(
            distance(Space::Ip, &[1.0, 2.0], &[2.0, 1.75], 0.0, 0.0),
            -4.5
        );
        let z = [0.0, 0.0];
        assert_eq!(
            distance(Space::Cosine, &z, &z, inverse_norm(&z), inverse_norm(&z)),
            1.0
        );
    }

    proptest! {
        #[test]
        fn kernels_match_f64_reference(
            pairs in (0usize..100).prop_flat_map(|n| (
                proptest::collection::vec(-10.0f32..10.0, n),
                proptest::collection::vec(-10.0f32..10.0, n),
            ))
        ) {
            let (a, b) = pairs;
            let exact = naive_dot(&a, &b);
            let scale: f64 = a.iter().zip(&b).map(|(x, y)| (*x as f64 * *y as f64).abs()).sum::<f64>() + 1.0;
            prop_assert!((dot(&a, &b) as f64 - exact).abs() <= 1e-5 * scale);
            prop_assert!((dot_portable(&a, &b) as f64 - exact).abs() <= 1e-5 * scale);
            let l2: f64 = a.iter().zip(&b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
            prop_assert!((l2sq(&a, &b) as f64 - l2).abs() <= 1e-5 * (l2 + 1.0));
            prop_assert!((l2sq_portable(&a, &b) as f64 - l2).abs() <= 1e-5 * (l2 + 1.0));
        }
    }
}
