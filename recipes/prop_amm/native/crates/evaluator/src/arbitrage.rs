//! The arbitrageur: once per step and AMM it takes the most profitable trade toward the fair
//! price. Against the normaliser the optimum is closed-form; against a submission it brackets
//! the profit's maximum by doubling from a retail-sized start, then refines it by golden-section
//! search, and the sampled curve goes through the shape guard.

use crate::amm::Amm;
use crate::market::size_distribution;
use crate::nano::NANO_SCALE_F64;
use crate::shape;
use rand::SeedableRng;
use rand_distr::{Distribution, LogNormal};
use rand_pcg::Pcg64;

const MIN_INPUT: f64 = 0.001;
const GOLDEN: f64 = 0.618_033_988_749_894_8;
const GOLDEN_MAX_ITERS: usize = 12;
const GOLDEN_REL_TOL: f64 = 1e-2;
const BRACKET_MAX_STEPS: usize = 24;
const BRACKET_GROWTH: f64 = 2.0;
const MAX_INPUT: f64 = (u64::MAX as f64 / NANO_SCALE_F64) * 0.999_999;
const MIN_NOTIONAL_Y: f64 = 0.01;

#[derive(Clone, Copy)]
struct Plan {
    buy_x: bool,
    input: f64,
    profit: f64,
}

/// An executed arbitrage; `edge` is the AMM's gain (negative: the arbitrageur's profit).
pub struct ArbTrade {
    pub edge: f64,
}

pub struct Arbitrageur {
    min_profit: f64,
    rng: Pcg64,
    starts: LogNormal<f64>,
}

#[inline]
fn sane(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        f64::NEG_INFINITY
    }
}

#[inline]
fn min_sell_input(fair: f64) -> f64 {
    MIN_INPUT.max(MIN_NOTIONAL_Y / fair.max(1e-9))
}

fn better(buy: Option<Plan>, sell: Option<Plan>) -> Option<Plan> {
    match (buy, sell) {
        (Some(b), Some(s)) => Some(if s.profit > b.profit { s } else { b }),
        (Some(b), None) => Some(b),
        (None, s) => s,
    }
}

impl Arbitrageur {
    pub fn new(min_profit: f64, mean_size: f64, size_sigma: f64, seed: u64) -> Self {
        Self {
            min_profit: min_profit.max(0.0),
            rng: Pcg64::seed_from_u64(seed),
            starts: size_distribution(mean_size, size_sigma),
        }
    }

    /// Arbitrage `amm` against `fair`; the trade made, if any.
    pub fn run(&mut self, amm: &mut Amm, fair: f64) -> Option<ArbTrade> {
        if !fair.is_finite() || fair <= 0.0 {
            return None;
        }
        let plan = if !amm.is_submission {
            better(self.closed_form(amm, fair, true), self.closed_form(amm, fair, false))
        } else {
            let min_buy = MIN_INPUT.max(MIN_NOTIONAL_Y);
            let min_sell = min_sell_input(fair);
            let start_y = self.starts.sample(&mut self.rng).max(MIN_INPUT).max(min_buy).min(MAX_INPUT);
            let start_x = (start_y / fair.max(1e-9)).max(min_sell).min(MAX_INPUT);
            let buy = self.searched(amm, fair, true, start_y, min_buy);
            let sell = self.searched(amm, fair, false, start_x, min_sell);
            better(buy, sell)
        }?;
        if plan.buy_x {
            let out_x = amm.execute_buy_x(plan.input);
            (out_x > 0.0).then(|| ArbTrade { edge: plan.input - out_x * fair })
        } else {
            let out_y = amm.execute_sell_x(plan.input);
            (out_y > 0.0).then(|| ArbTrade { edge: plan.input * fair - out_y })
        }
    }

    fn closed_form(&self, amm: &mut Amm, fair: f64, buy_x: bool) -> Option<Plan> {
        let s = amm.storage();
        let fee_bps = match u16::from_le_bytes([s[0], s[1]]) {
            0 => 30,
            raw => raw,
        } as f64;
        let gamma = (10_000.0 - fee_bps) / 10_000.0;
        if !gamma.is_finite() || gamma <= 0.0 {
            return None;
        }
        let (rx, ry) = (amm.reserve_x, amm.reserve_y);
        if !rx.is_finite() || !ry.is_finite() || rx <= 0.0 || ry <= 0.0 {
            return None;
        }
        if buy_x {
            let target = (fair * rx * gamma * ry).sqrt();
            if !target.is_finite() || target <= ry {
                return None;
            }
            let input = ((target - ry) / gamma).clamp(MIN_INPUT.max(MIN_NOTIONAL_Y), MAX_INPUT);
            let out = amm.quote_buy_x(input);
            if out <= 0.0 {
                return None;
            }
            let profit = out * fair - input;
            (profit >= self.min_profit).then_some(Plan { buy_x, input, profit })
        } else {
            let target = (ry * rx * gamma / fair).sqrt();
            if !target.is_finite() || target <= rx {
                return None;
            }
            let input = ((target - rx) / gamma).clamp(min_sell_input(fair), MAX_INPUT);
            let out = amm.quote_sell_x(input);
            if out <= 0.0 {
                return None;
            }
            let profit = out - input * fair;
            (profit >= self.min_profit).then_some(Plan { buy_x, input, profit })
        }
    }

    fn searched(
        &mut self,
        amm: &mut Amm,
        fair: f64,
        buy_x: bool,
        start: f64,
        min_input: f64,
    ) -> Option<Plan> {
        let mut sampled: Vec<(f64, f64)> = Vec::with_capacity(BRACKET_MAX_STEPS + GOLDEN_MAX_ITERS + 8);
        let mut profit = |input: f64| -> f64 {
            if buy_x {
                let out = amm.quote_buy_x(input);
                sampled.push((input, out));
                out * fair - input
            } else {
                let out = amm.quote_sell_x(input);
                sampled.push((input, out));
                out - input * fair
            }
        };
        let (lo, hi) = bracket(start, min_input, MAX_INPUT, &mut profit);
        let best = golden(lo, hi, &mut profit);
        let context = if buy_x { "arbitrage buy search" } else { "arbitrage sell search" };
        shape::enforce(amm.is_submission, &sampled, min_input, context);
        if best < min_input {
            return None;
        }
        let (out, profit) = if buy_x {
            let out = amm.quote_buy_x(best);
            (out, out * fair - best)
        } else {
            let out = amm.quote_sell_x(best);
            (out, out - best * fair)
        };
        if out <= 0.0 || profit < self.min_profit {
            return None;
        }
        Some(Plan { buy_x, input: best, profit })
    }
}

/// An interval holding the objective's maximum: doubling from `start` until it stops rising.
fn bracket<F: FnMut(f64) -> f64>(start: f64, min_input: f64, max_input: f64, f: &mut F) -> (f64, f64) {
    let min_input = min_input.max(MIN_INPUT);
    let mut lo = min_input;
    let max_input = max_input.max(min_input);
    let mut mid = start.clamp(min_input, max_input);
    let mut mid_value = sane(f(mid));
    if mid_value <= 0.0 {
        return (lo, mid);
    }
    let mut hi = (mid * BRACKET_GROWTH).min(max_input);
    if hi <= mid {
        return (lo, mid);
    }
    let mut hi_value = sane(f(hi));
    for _ in 0..BRACKET_MAX_STEPS {
        if hi_value <= mid_value || hi >= max_input {
            return (lo, hi);
        }
        lo = mid;
        mid = hi;
        mid_value = hi_value;
        let next = (hi * BRACKET_GROWTH).min(max_input);
        if next <= hi {
            return (lo, hi);
        }
        hi = next;
        hi_value = sane(f(hi));
    }
    (lo, hi)
}

/// Golden-section search for the maximum on [lo, hi]; the best input seen.
fn golden<F: FnMut(f64) -> f64>(lo: f64, hi: f64, f: &mut F) -> f64 {
    let mut left = lo.min(hi).max(0.0);
    let mut right = hi.max(lo).max(MIN_INPUT);
    if right <= left {
        let _ = sane(f(right));
        return right;
    }
    let mut best_x = left;
    let mut best = sane(f(left));
    let right_value = sane(f(right));
    if right_value > best {
        best_x = right;
        best = right_value;
    }
    let mut x1 = right - GOLDEN * (right - left);
    let mut x2 = left + GOLDEN * (right - left);
    let mut f1 = sane(f(x1));
    let mut f2 = sane(f(x2));
    if f1 > best {
        best_x = x1;
        best = f1;
    }
    if f2 > best {
        best_x = x2;
        best = f2;
    }
    for _ in 0..GOLDEN_MAX_ITERS {
        if f1 < f2 {
            left = x1;
            x1 = x2;
            f1 = f2;
            x2 = left + GOLDEN * (right - left);
            f2 = sane(f(x2));
            if f2 > best {
                best_x = x2;
                best = f2;
            }
        } else {
            right = x2;
            x2 = x1;
            f2 = f1;
            x1 = right - GOLDEN * (right - left);
            f1 = sane(f(x1));
            if f1 > best {
                best_x = x1;
                best = f1;
            }
        }
        let mid = 0.5 * (left + right);
        if (right - left) <= GOLDEN_REL_TOL * mid.abs().max(MIN_INPUT) {
            break;
        }
    }
    best_x
}
