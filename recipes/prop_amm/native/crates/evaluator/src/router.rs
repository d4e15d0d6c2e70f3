//! The order router: a retail order is split between the submission (share alpha) and the
//! normaliser to maximise the trader's output, by golden-section search over alpha in [0, 1]
//! with early stops; the submission's sampled quotes go through the shape guard.

use crate::amm::Amm;
use crate::market::Order;
use crate::shape;

const MIN_TRADE: f64 = 0.001;
const GOLDEN: f64 = 0.618_033_988_749_894_8;
const GOLDEN_MAX_ITERS: usize = 14;
const ALPHA_TOL: f64 = 1e-3;
const AMOUNT_REL_TOL: f64 = 1e-2;
const SCORE_REL_GAP: f64 = 1e-2;

/// A routed fill on one AMM.
pub struct Fill {
    pub is_submission: bool,
    pub amm_buys_x: bool,
    pub amount_x: f64,
    pub amount_y: f64,
}

#[derive(Clone, Copy)]
struct Quote {
    in_sub: f64,
    in_norm: f64,
    out_sub: f64,
    out_norm: f64,
}

#[inline]
fn score(q: &Quote) -> f64 {
    let total = q.out_sub + q.out_norm;
    if total.is_finite() {
        total
    } else {
        f64::NEG_INFINITY
    }
}

#[inline]
fn best_of(a: Quote, b: Quote) -> Quote {
    if score(&b) > score(&a) {
        b
    } else {
        a
    }
}

#[inline]
fn within_gap(a: f64, b: f64) -> bool {
    if !a.is_finite() || !b.is_finite() {
        return false;
    }
    (a - b).abs() <= SCORE_REL_GAP * a.abs().max(b.abs()).max(1e-12)
}

fn split_quote(total: f64, alpha: f64, buy: bool, sub: &mut Amm, norm: &mut Amm) -> Quote {
    let alpha = alpha.clamp(0.0, 1.0);
    let in_sub = total * alpha;
    let in_norm = total * (1.0 - alpha);
    let quote = |amm: &mut Amm, input: f64| {
        if input <= MIN_TRADE {
            0.0
        } else if buy {
            amm.quote_buy_x(input)
        } else {
            amm.quote_sell_x(input)
        }
    };
    let out_sub = quote(sub, in_sub);
    let out_norm = quote(norm, in_norm);
    Quote { in_sub, in_norm, out_sub, out_norm }
}

fn best_split<F: FnMut(f64) -> Quote>(total: f64, mut eval: F) -> (Quote, Vec<Quote>) {
    let mut sampled = Vec::with_capacity(GOLDEN_MAX_ITERS + 6);
    let (mut left, mut right) = (0.0_f64, 1.0_f64);
    let q_left = eval(left);
    let q_right = eval(right);
    sampled.push(q_left);
    sampled.push(q_right);
    let mut best = best_of(q_left, q_right);
    let mut x1 = right - GOLDEN * (right - left);
    let mut x2 = left + GOLDEN * (right - left);
    let mut q1 = eval(x1);
    let mut q2 = eval(x2);
    sampled.push(q1);
    sampled.push(q2);
    best = best_of(best, q1);
    best = best_of(best, q2);
    for _ in 0..GOLDEN_MAX_ITERS {
        if right - left <= ALPHA_TOL {
            break;
        }
        let width = total * (right - left);
        let scale = (total * (0.5 * (left + right))).abs().max(MIN_TRADE);
        if width <= AMOUNT_REL_TOL * scale {
            break;
        }
        if within_gap(score(&q1), score(&q2)) {
            break;
        }
        if score(&q1) < score(&q2) {
            left = x1;
            x1 = x2;
            q1 = q2;
            x2 = left + GOLDEN * (right - left);
            q2 = eval(x2);
            sampled.push(q2);
            best = best_of(best, q2);
        } else {
            right = x2;
            x2 = x1;
            q2 = q1;
            x1 = right - GOLDEN * (right - left);
            q1 = eval(x1);
            sampled.push(q1);
            best = best_of(best, q1);
        }
    }
    let center = eval((left + right) * 0.5);
    sampled.push(center);
    best = best_of(best, center);
    (best, sampled)
}

/// Route `order` at `fair`; the fills made.
pub fn route(order: &Order, sub: &mut Amm, norm: &mut Amm, fair: f64) -> Vec<Fill> {
    let buy = order.is_buy;
    let total = if buy { order.size } else { order.size / fair };
    let (best, sampled) = best_split(total, |alpha| split_quote(total, alpha, buy, sub, norm));
    let points: Vec<(f64, f64)> = sampled.iter().map(|q| (q.in_sub, q.out_sub)).collect();
    let context = if buy { "router buy split search" } else { "router sell split search" };
    shape::enforce(sub.is_submission, &points, MIN_TRADE, context);

    let mut fills = Vec::new();
    for (amm, input, quoted, is_submission) in
        [(&mut *sub, best.in_sub, best.out_sub, true), (&mut *norm, best.in_norm, best.out_norm, false)]
    {
        if input > MIN_TRADE && quoted > 0.0 {
            if buy {
                let out_x = amm.execute_buy_x(input);
                if out_x > 0.0 {
                    fills.push(Fill { is_submission, amm_buys_x: false, amount_x: out_x, amount_y: input });
                }
            } else {
                let out_y = amm.execute_sell_x(input);
                if out_y > 0.0 {
                    fills.push(Fill { is_submission, amm_buys_x: true, amount_x: input, amount_y: out_y });
                }
            }
        }
    }
    fills
}
