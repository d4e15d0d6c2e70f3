//! The challenge's validity checks, run natively on the compiled strategy: trades at reserves
//! (100, 10,000) answer something, outputs rise with size and are concave (1e6-nano steps) on
//! both sides, and 32 pseudo-random reserve/storage states execute with `after_swap`.

use crate::amm::Amm;
use crate::nano::{from_nano, to_nano};
use crate::shape;
use crate::{AfterSwapFn, SwapFn, STORAGE_SIZE};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The trade sizes of the monotonicity and concavity checks.
pub const TRADE_SIZES: [f64; 10] = [0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0];
const CONCAVITY_DELTA_NANO: u64 = 1_000_000;
const CONCAVITY_TOL_NANO: i128 = 1;

/// One check's verdict.
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

fn side_name(side: u8) -> &'static str {
    if side == 0 {
        "buy"
    } else {
        "sell"
    }
}

fn guarded(name: &'static str, f: impl FnOnce() -> Result<String, String>) -> Check {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(detail)) => Check { name, passed: true, detail },
        Ok(Err(detail)) => Check { name, passed: false, detail },
        Err(payload) => Check { name, passed: false, detail: format!("the strategy panicked: {}", crate::cli::panic_text(&payload)) },
    }
}

fn start_reserves() -> (u64, u64) {
    (to_nano(100.0), to_nano(10_000.0))
}

fn basic(swap: SwapFn) -> Check {
    guarded("basic_trades", || {
        let mut amm = Amm::new(swap, None, 100.0, 10_000.0, true);
        let (rx, ry) = start_reserves();
        let buy = amm.call(0, to_nano(10.0), rx, ry);
        if buy == 0 {
            return Err("buy X with 10 Y at reserves (100, 10000) returned zero output".into());
        }
        let sell = amm.call(1, to_nano(1.0), rx, ry);
        if sell == 0 {
            return Err("sell 1 X at reserves (100, 10000) returned zero output".into());
        }
        Ok(format!("buy 10 Y -> {:.6} X; sell 1 X -> {:.6} Y", from_nano(buy), from_nano(sell)))
    })
}

fn monotone(swap: SwapFn, side: u8) -> Check {
    let name = if side == 0 { "monotonic_buy" } else { "monotonic_sell" };
    guarded(name, || {
        let mut amm = Amm::new(swap, None, 100.0, 10_000.0, true);
        let (rx, ry) = start_reserves();
        let mut prev = 0u64;
        for size in TRADE_SIZES {
            let out = amm.call(side, to_nano(size), rx, ry);
            if out <= prev && prev > 0 {
                return Err(format!(
                    "{} side: size {size} gives {out} nanos, not more than {prev} for the size before",
                    side_name(side)
                ));
            }
            prev = out;
        }
        Ok(format!("{} side rises over {} sizes", side_name(side), TRADE_SIZES.len()))
    })
}

fn concave(swap: SwapFn, side: u8) -> Check {
    let name = if side == 0 { "concave_buy" } else { "concave_sell" };
    guarded(name, || {
        let mut amm = Amm::new(swap, None, 100.0, 10_000.0, true);
        let (rx, ry) = start_reserves();
        for size in TRADE_SIZES {
            let in0 = to_nano(size);
            let in1 = in0.saturating_add(CONCAVITY_DELTA_NANO);
            let in2 = in1.saturating_add(CONCAVITY_DELTA_NANO);
            if in1 <= in0 || in2 <= in1 {
                continue;
            }
            let out0 = amm.call(side, in0, rx, ry) as i128;
            let out1 = amm.call(side, in1, rx, ry) as i128;
            let out2 = amm.call(side, in2, rx, ry) as i128;
            let (step1, step2) = (out1 - out0, out2 - out1);
            if step2 > step1 + CONCAVITY_TOL_NANO {
                return Err(format!(
                    "{} side at size {size}: the second step {step2} nanos exceeds the first {step1} \
                     (delta {CONCAVITY_DELTA_NANO} nanos)",
                    side_name(side)
                ));
            }
        }
        Ok(format!("{} side concave at {} sizes", side_name(side), TRADE_SIZES.len()))
    })
}

/// A 64-bit mixer (SplitMix64's finaliser): the random states' source.
fn mix(mut z: u64) -> u64 {
    z ^= z >> 30;
    z = z.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z ^= z >> 27;
    z = z.wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn random_states(swap: SwapFn, after: Option<AfterSwapFn>) -> Check {
    guarded("random_states", || {
        for seed in 0..32u64 {
            let mut amm = Amm::new(swap, after, 1.0, 1.0, true);
            let mut storage = [0u8; STORAGE_SIZE];
            for (i, byte) in storage.iter_mut().take(32).enumerate() {
                *byte = (mix(seed.wrapping_add(i as u64)) & 0xFF) as u8;
            }
            amm.set_initial_storage(&storage);
            amm.set_step(seed);
            let rx = 1_000_000_000u64 + mix(seed ^ 0x0123_4567_89AB_CDEF) % 2_000_000_000_000u64;
            let ry = 1_000_000_000u64 + mix(seed ^ 0x0F0F_0F0F_F0F0_F0F0) % 200_000_000_000_000u64;
            let side = (seed & 1) as u8;
            let amount = 1_000_000 + mix(seed ^ 0xDEAD_BEEF) % 10_000_000_000;
            let out = amm.call(side, amount, rx, ry);
            let (post_rx, post_ry) = if side == 0 {
                (rx.saturating_sub(out), ry.saturating_add(amount))
            } else {
                (rx.saturating_add(amount), ry.saturating_sub(out))
            };
            amm.call_after_swap(side, amount, out, post_rx, post_ry);
        }
        Ok("32 reserve/storage states executed".into())
    })
}

fn dense_shape(swap: SwapFn, side: u8) -> Check {
    let name = if side == 0 { "shape_grid_buy" } else { "shape_grid_sell" };
    guarded(name, || {
        for (rx, ry) in [(100.0, 10_000.0), (50.0, 10_000.0), (400.0, 20_000.0), (10.0, 2_000.0)] {
            let mut amm = Amm::new(swap, None, rx, ry, true);
            let points: Vec<(f64, f64)> = (0..96)
                .map(|i| {
                    let input = 0.01 * 1.15f64.powi(i);
                    let out = if side == 0 { amm.quote_buy_x(input) } else { amm.quote_sell_x(input) };
                    (input, out)
                })
                .collect();
            if let Some(message) = shape::violation(&points, 0.001) {
                return Err(format!("{} side at reserves ({rx}, {ry}): {message}", side_name(side)));
            }
        }
        Ok(format!("{} side monotone and concave on a 96-size grid at 4 reserve states", side_name(side)))
    })
}

/// `validate`: every check.
pub fn validate(swap: SwapFn, after: Option<AfterSwapFn>) -> Vec<Check> {
    let mut out = vec![basic(swap)];
    out.extend(concavity(swap));
    out.push(random_states(swap, after));
    out
}

/// `concavity_check`: monotone and concave on both sides, at the challenge's sizes and on a grid.
pub fn concavity(swap: SwapFn) -> Vec<Check> {
    vec![
        monotone(swap, 0),
        monotone(swap, 1),
        concave(swap, 0),
        concave(swap, 1),
        dense_shape(swap, 0),
        dense_shape(swap, 1),
    ]
}
