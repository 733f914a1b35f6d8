//! The compact encoding of a block of metric points (step, value, timestamp), after Gorilla:
//! T. Pelkonen et al., "Gorilla: A Fast, Scalable, In-Memory Time Series Database", PVLDB
//! 8(12), 2015, §4.1. Steps and timestamps are stored as delta-of-deltas in variable-length
//! prefix codes, values as the XOR of each with the previous one (leading and trailing zero
//! counts, then the meaningful bits). Two departures from the paper, both to keep every input
//! exact: delta-of-deltas take the full 64 bits in the widest bucket (steps and microsecond
//! timestamps may jump by more than 32 bits), with two more buckets between (20 and 32 bits:
//! microsecond clocks jitter by more than Gorilla's second-resolution buckets hold); and the
//! leading-zero count takes 6 bits (0–63) rather than 5.
//!
//! Every f64 round-trips bit for bit (XOR is lossless: -0.0, subnormals, the extremes, any NaN
//! payload). A regular series costs about 2 bits a step, 2–30 bits a timestamp and 1–64 bits a
//! value. Decoding never panics: a truncated or corrupt block is an error.

use std::fmt;

/// One point as a block holds it: step, value and timestamp.
pub type BlockPoint = super::metrics::Point;

/// A block that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt(&'static str);

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "corrupt metric block: {}", self.0)
    }
}

impl std::error::Error for Corrupt {}

/// Delta-of-delta buckets: (prefix bits, prefix length, payload bits). A value fits a bucket
/// when it is within the payload's signed range.
const DOD_BUCKETS: [(u64, u32, u32); 7] = [
    (0b0, 1, 0),
    (0b10, 2, 7),
    (0b110, 3, 9),
    (0b1110, 4, 12),
    (0b11110, 5, 20),
    (0b111110, 6, 32),
    (0b111111, 6, 64),
];

struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 = it is full or there is none).
    used: u32,
}

impl BitWriter {
    fn new() -> Self {
        Self {
            bytes: Vec::new(),
            used: 0,
        }
    }

    /// Writes the low `n` bits of `v`, most significant first.
    fn write(&mut self, v: u64, n: u32) {
        for i in (0..n).rev() {
            if self.used == 0 {
                self.bytes.push(0);
            }
            let bit = ((v >> i) & 1) as u8;
            if let Some(last) = self.bytes.last_mut() {
                *last |= bit << (7 - self.used);
            }
            self.used = (self.used + 1) % 8;
        }
    }

    fn varint(&mut self, mut v: u64) {
        loop {
            let byte = v & 0x7f;
            v >>= 7;
            if v == 0 {
                self.write(byte, 8);
                return;
            }
            self.write(byte | 0x80, 8);
        }
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    bit: usize,
}

impl BitReader<'_> {
    fn read(&mut self, n: u32) -> Result<u64, Corrupt> {
        let mut v = 0u64;
        for _ in 0..n {
            let byte = self.bytes.get(self.bit / 8).ok_or(Corrupt("ends early"))?;
            let bit = (byte >> (7 - self.bit % 8)) & 1;
            v = (v << 1) | u64::from(bit);
            self.bit += 1;
        }
        Ok(v)
    }

    fn varint(&mut self) -> Result<u64, Corrupt> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.read(8)?;
            v |= (byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Corrupt("varint too long"))
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn write_dod(w: &mut BitWriter, dod: i64) {
    for (prefix, len, bits) in DOD_BUCKETS {
        let fits = match bits {
            0 => dod == 0,
            64 => true,
            b => {
                let half = 1i64 << (b - 1);
                (-half..half).contains(&dod)
            }
        };
        if fits {
            w.write(prefix, len);
            if bits > 0 {
                let mask = if bits == 64 {
                    u64::MAX
                } else {
                    (1u64 << bits) - 1
                };
                w.write(dod as u64 & mask, bits);
            }
            return;
        }
    }
}

fn read_dod(r: &mut BitReader<'_>) -> Result<i64, Corrupt> {
    let mut ones = 0;
    while ones < 6 && r.read(1)? == 1 {
        ones += 1;
    }
    let bits = match ones {
        0 => return Ok(0),
        1 => 7,
        2 => 9,
        3 => 12,
        4 => 20,
        5 => 32,
        _ => 64,
    };
    let raw = r.read(bits)?;
    if bits == 64 {
        return Ok(raw as i64);
    }
    // Sign-extend the payload.
    let shift = 64 - bits;
    Ok(((raw << shift) as i64) >> shift)
}

/// Encodes points sorted by step (one per step).
pub fn encode(points: &[BlockPoint]) -> Vec<u8> {
    let mut w = BitWriter::new();
    w.varint(points.len() as u64);
    let Some(first) = points.first() else {
        return w.bytes;
    };
    w.varint(zigzag(first.step));
    w.varint(zigzag(first.at));
    w.write(first.value.to_bits(), 64);
    let (mut step, mut at, mut value) = (first.step, first.at, first.value.to_bits());
    let (mut step_delta, mut at_delta) = (0i64, 0i64);
    // The previous value's meaningful window: leading zeros and length.
    let mut window: Option<(u32, u32)> = None;
    for p in &points[1..] {
        let d = p.step.wrapping_sub(step);
        write_dod(&mut w, d.wrapping_sub(step_delta));
        (step, step_delta) = (p.step, d);
        let d = p.at.wrapping_sub(at);
        write_dod(&mut w, d.wrapping_sub(at_delta));
        (at, at_delta) = (p.at, d);
        let bits = p.value.to_bits();
        let xor = bits ^ value;
        value = bits;
        if xor == 0 {
            w.write(0, 1);
            continue;
        }
        w.write(1, 1);
        let (lead, trail) = (xor.leading_zeros(), xor.trailing_zeros());
        match window {
            Some((l, len)) if lead >= l && trail >= 64 - l - len => {
                w.write(0, 1);
                w.write(xor >> (64 - l - len), len);
            }
            _ => {
                let len = 64 - lead - trail;
                w.write(1, 1);
                w.write(u64::from(lead), 6);
                w.write(u64::from(len - 1), 6);
                w.write(xor >> trail, len);
                window = Some((lead, len));
            }
        }
    }
    w.bytes
}

/// The most points a block may claim to hold (a guard against a corrupt count).
pub const MAX_BLOCK_POINTS: u64 = 1 << 20;

/// Decodes a block made by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Vec<BlockPoint>, Corrupt> {
    let mut r = BitReader { bytes, bit: 0 };
    let n = r.varint()?;
    if n > MAX_BLOCK_POINTS {
        return Err(Corrupt("too many points"));
    }
    let mut out = Vec::with_capacity((n as usize).min(bytes.len() * 8));
    if n == 0 {
        return Ok(out);
    }
    let mut step = unzigzag(r.varint()?);
    let mut at = unzigzag(r.varint()?);
    let mut value = r.read(64)?;
    out.push(BlockPoint {
        step,
        value: f64::from_bits(value),
        at,
    });
    let (mut step_delta, mut at_delta) = (0i64, 0i64);
    let mut window: Option<(u32, u32)> = None;
    for _ in 1..n {
        step_delta = step_delta.wrapping_add(read_dod(&mut r)?);
        step = step.wrapping_add(step_delta);
        at_delta = at_delta.wrapping_add(read_dod(&mut r)?);
        at = at.wrapping_add(at_delta);
        if r.read(1)? == 1 {
            let (lead, len) = if r.read(1)? == 0 {
                window.ok_or(Corrupt("a value reuses a window before one is set"))?
            } else {
                let lead = r.read(6)? as u32;
                let len = r.read(6)? as u32 + 1;
                if lead + len > 64 {
                    return Err(Corrupt("a value's window is wider than 64 bits"));
                }
                window = Some((lead, len));
                (lead, len)
            };
            value ^= r.read(len)? << (64 - lead - len);
        }
        out.push(BlockPoint {
            step,
            value: f64::from_bits(value),
            at,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn point(step: i64, value: f64, at: i64) -> BlockPoint {
        BlockPoint { step, value, at }
    }

    fn same(a: &[BlockPoint], b: &[BlockPoint]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.step == y.step && x.at == y.at && x.value.to_bits() == y.value.to_bits()
            })
    }

    #[test]
    fn edge_values_round_trip_bit_for_bit() {
        let edges = [
            0.0,
            -0.0,
            f64::MIN_POSITIVE,
            f64::MIN_POSITIVE / 2.0, // subnormal
            f64::from_bits(1),       // the smallest subnormal
            -f64::from_bits(1),
            f64::MAX,
            f64::MIN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            f64::from_bits(0x7ff8_0000_dead_beef), // a NaN with a payload
            1.0,
            1.0 + f64::EPSILON,
            std::f64::consts::PI,
        ];
        let points: Vec<_> = edges
            .iter()
            .enumerate()
            .map(|(i, v)| point(i as i64, *v, 1_790_000_000_000_000 + i as i64))
            .collect();
        assert!(same(&decode(&encode(&points)).unwrap(), &points));
        let extremes = [
            point(i64::MIN, 1.0, i64::MIN),
            point(-1, 2.0, 0),
            point(0, 3.0, i64::MAX),
            point(i64::MAX, 4.0, -1),
        ];
        assert!(same(&decode(&encode(&extremes)).unwrap(), &extremes));
        assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
    }

    #[test]
    fn a_regular_series_is_small() {
        // 1,024 steps of a slowly moving loss, one point a second with millisecond jitter.
        let points: Vec<_> = (0..1024)
            .map(|s| {
                let at = 1_790_000_000_000_000 + s * 1_000_000 + (s * 7919 % 1000);
                point(s, 1.0 / (1.0 + s as f64 / 100.0), at)
            })
            .collect();
        let bytes = encode(&points);
        assert!(same(&decode(&bytes).unwrap(), &points));
        let per_point = bytes.len() as f64 / points.len() as f64;
        assert!(per_point < 12.0, "{per_point} bytes a point");
        // A constant series at fixed intervals: a few bits a point.
        let flat: Vec<_> = (0..1024).map(|s| point(s, 0.5, s * 1000)).collect();
        assert!(encode(&flat).len() < 1024 / 2, "{}", encode(&flat).len());
    }

    #[test]
    fn corrupt_blocks_are_errors_not_panics() {
        let points: Vec<_> = (0..100).map(|s| point(s, s as f64 * 0.1, s)).collect();
        let bytes = encode(&points);
        for cut in 0..bytes.len() {
            let _ = decode(&bytes[..cut]);
            assert!(decode(&bytes[..cut]).is_err() || cut == bytes.len());
        }
        assert!(decode(&[0xff; 12]).is_err());
        assert!(decode(&[]).is_err());
    }

    fn any_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<u64>().prop_map(f64::from_bits),
            (-1e6f64..1e6),
            Just(0.0),
            Just(-0.0),
            Just(f64::MAX),
            Just(f64::MIN),
            Just(f64::from_bits(1)),
        ]
    }

    proptest! {
        #[test]
        fn every_block_round_trips(
            start in any::<i64>(),
            gaps in prop::collection::vec(1i64..5000, 0..300),
            big_gap in any::<bool>(),
            at0 in any::<i64>(),
            at_steps in prop::collection::vec(any::<i64>(), 300),
            values in prop::collection::vec(any_f64(), 300),
        ) {
            let mut step = start;
            let mut points = vec![point(step, values[0], at0)];
            for (i, g) in gaps.iter().enumerate() {
                let gap = if big_gap && i == 0 { i64::MAX / 3 } else { *g };
                step = step.wrapping_add(gap);
                let at = at_steps[i] / if i % 2 == 0 { 1 } else { 1 << 40 };
                points.push(point(step, values[(i + 1) % values.len()], at));
            }
            prop_assert!(same(&decode(&encode(&points)).unwrap(), &points));
        }

        #[test]
        fn decoding_any_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }
    }
}
