//! Fast decoding of JSON arrays of numbers into `f32` vectors.
//!
//! A 1536-d query body is ~32 KB of decimal floats. serde_json (with `float_roundtrip`, which
//! metadata values need for exact round trips) spent ~75 µs on them, a tenth of a c=1 query.
//! Here serde_json only delimits and validates the array (as a [`RawValue`], no number
//! conversion) and `fast-float2` converts each number: 48 µs for the body
//! (`cargo bench --bench wire_decode`).
//! The result is bit-identical to serde_json's (`float_roundtrip`): decimals are rounded
//! correctly to `f32` directly, integers go through `u64`/`i64` as serde_json's do, and a
//! number beyond `f32`'s range is left to serde_json to refuse.

use serde::de::{Deserialize, Deserializer, Error as _};
use serde_json::value::RawValue;

/// A vector sent as a JSON array of numbers; deserializes only from serde_json (it needs the
/// raw text), which is how every request body is parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatArray(pub Vec<f32>);

impl<'de> Deserialize<'de> for FloatArray {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        match parse_f32_array(raw.get()) {
            Some(v) => Ok(FloatArray(v)),
            // Anything but a flat array of numbers: let serde say what is wrong.
            None => Vec::<f32>::deserialize(&*raw)
                .map(FloatArray)
                .map_err(D::Error::custom),
        }
    }
}

/// Parses `text`, a valid JSON value, as a flat array of numbers; `None` for anything else
/// (so the caller can produce serde's own error message).
pub fn parse_f32_array(text: &str) -> Option<Vec<f32>> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    i = skip_ws(b, i + 1);
    // The shortest number plus its comma is 2 bytes; most floats on the wire are 10–20.
    let mut out = Vec::with_capacity((b.len() / 8).min(1 << 16));
    if b.get(i) == Some(&b']') {
        i += 1;
    } else {
        loop {
            // The text is valid JSON, so a token starting here that fast-float accepts is a
            // JSON number (JSON has no `nan`, `inf` or leading `+`); strings, `null`, `true`
            // and nested arrays fail to parse and fall back.
            let (v, n) = fast_float2::parse_partial::<f32, _>(&b[i..]).ok()?;
            if n == 0 {
                return None;
            }
            let token = &b[i..i + n];
            let integer = !token.iter().any(|c| matches!(c, b'.' | b'e' | b'E'));
            let x = match integer.then(|| integer_as_f32(token)).flatten() {
                Some(x) => x,
                // serde_json refuses a number beyond f32's range (NumberOutOfRange): fall
                // back so the caller gets that error.
                None if v.is_infinite() => return None,
                None => v,
            };
            out.push(x);
            i = skip_ws(b, i + n);
            match b.get(i) {
                Some(b',') => i = skip_ws(b, i + 1),
                Some(b']') => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    (skip_ws(b, i) == b.len()).then_some(out)
}

/// serde_json reads an integer token as `u64` (non-negative) or `i64` (negative) and casts
/// that to `f32`; this takes the same path rather than rely on that rounding matching a
/// direct decimal parse. `-0` and integers out of range are floats to serde_json: `None`
/// sends them the float way.
fn integer_as_f32(token: &[u8]) -> Option<f32> {
    let text = std::str::from_utf8(token).ok()?;
    match text.strip_prefix('-') {
        None => text.parse::<u64>().ok().map(|u| u as f32),
        Some(digits) => {
            let magnitude = digits.parse::<u64>().ok()?;
            let negated = (magnitude as i64).wrapping_neg();
            (negated < 0).then_some(negated as f32)
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn via_serde(text: &str) -> Option<Vec<f32>> {
        serde_json::from_str::<Vec<f32>>(text).ok()
    }

    fn bits(v: Option<Vec<f32>>) -> Option<Vec<u32>> {
        v.map(|v| v.iter().map(|x| x.to_bits()).collect())
    }

    #[test]
    fn edge_numbers_match_serde() {
        for text in [
            "[]",
            " [ ] ",
            "[0]",
            "[-0]",
            "[-0.0, 0.0]",
            "[1e-50, 1e30, 1E+3, -2.5e-3]",
            "[3.4028235e38, 3.4028235677973364e38, -3.40282356779733643e38]",
            "[0e999999999999, 1e-999999999999]",
            "[1.401298464324817e-45, 7e-46, 1e-46]",
            "[18446744073709551615, -9223372036854775808, 18446744073709551616]",
            "[9007199254740993, 9007199274740993, -9223372036854775807, -9223372036854775809]",
            "[16777217, 4611686293305294849]",
            "[0.1,0.2 ,0.30000000000000004\n,\t1]",
            "[0.013456789, -0.2, 5]",
        ] {
            let ours = parse_f32_array(text).unwrap_or_else(|| panic!("ours: {text}"));
            let theirs = via_serde(text).unwrap_or_else(|| panic!("serde: {text}"));
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&ours), bits(&theirs), "{text}");
        }
    }

    #[test]
    fn non_arrays_of_numbers_fall_back() {
        for text in [
            "null",
            "5",
            "\"AACAPw==\"",
            "{}",
            "[null]",
            "[1, \"a\"]",
            "[[1]]",
            "[true]",
            "[1] x",
            "[1e39]",
            "[-3.4028235677973367e38]",
            "[1e999999999999]",
        ] {
            assert_eq!(parse_f32_array(text), None, "{text}");
        }
    }

    #[test]
    fn bad_elements_keep_serde_errors() {
        let err = serde_json::from_str::<FloatArray>("[1, \"a\"]").unwrap_err();
        assert!(err.to_string().contains("expected f32"), "{err}");
        let ok: FloatArray = serde_json::from_str("[1, 0.5]").unwrap();
        assert_eq!(ok.0, vec![1.0, 0.5]);
    }

    proptest! {
        #[test]
        fn any_floats_round_trip_like_serde(
            xs in prop::collection::vec(any::<f64>().prop_filter("finite", |x| x.is_finite()), 0..64),
            as_f32 in any::<bool>(),
        ) {
            // Shortest f32 text (what most clients send) and shortest f64 text.
            let text = if as_f32 {
                serde_json::to_string(&xs.iter().map(|&x| x as f32).filter(|x| x.is_finite()).collect::<Vec<_>>())
            } else {
                serde_json::to_string(&xs)
            }.unwrap();
            // Out-of-range f64s are refused by both (ours falls back to serde's error).
            prop_assert_eq!(bits(parse_f32_array(&text)), bits(via_serde(&text)));
        }

        #[test]
        fn decimal_text_matches_serde(
            mantissa in any::<i64>(), frac in 0u32..1_000_000, exp in -60i32..60,
        ) {
            let text = format!("[{mantissa}.{frac:06}e{exp}, {mantissa}]");
            prop_assert_eq!(bits(parse_f32_array(&text)), bits(via_serde(&text)));
        }
    }
}
