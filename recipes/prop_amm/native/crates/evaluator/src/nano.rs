//! Amounts cross the strategy boundary as u64 nano-units (1e-9 of a token).

pub const NANO_SCALE_F64: f64 = 1_000_000_000.0;

/// A positive amount in nano-units: 0 for NaN or non-positive, saturating at u64::MAX.
#[inline]
pub fn to_nano(value: f64) -> u64 {
    if value.is_nan() || value <= 0.0 {
        return 0;
    }
    if value.is_infinite() {
        return u64::MAX;
    }
    let scaled = value * NANO_SCALE_F64;
    if scaled >= u64::MAX as f64 {
        u64::MAX
    } else {
        scaled as u64
    }
}

/// Nano-units back to tokens.
#[inline]
pub fn from_nano(value: u64) -> f64 {
    value as f64 / NANO_SCALE_F64
}
