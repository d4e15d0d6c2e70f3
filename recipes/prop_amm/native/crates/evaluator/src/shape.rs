//! The runtime guard on a submission's curve: the (input, output) points a search sampled must
//! be monotone and concave in nano-units, within a few nanos of quantisation noise. A violation
//! ends the simulation (the challenge's verdict).

use crate::nano::{from_nano, to_nano};

const DELTA_SLACK_NANO: u64 = 4;
const MERGE_EPS_NANO: u64 = 4;
const MIN_DX_NANO: u64 = 1_000_000;

/// Panics with the challenge's message when the sampled curve breaks the rules.
pub fn enforce(is_submission: bool, points: &[(f64, f64)], min_input: f64, context: &str) {
    if !is_submission {
        return;
    }
    if let Some(message) = violation(points, min_input) {
        panic!("submission shape violation during {context}: {message}");
    }
}

/// What is wrong with the sampled curve, if anything.
pub fn violation(points: &[(f64, f64)], min_input: f64) -> Option<String> {
    let min_nano = to_nano(min_input);
    let mut sorted: Vec<(u64, u64)> = points
        .iter()
        .copied()
        .filter(|(i, o)| i.is_finite() && o.is_finite() && *i > min_input && *o >= 0.0)
        .map(|(i, o)| (to_nano(i), to_nano(o)))
        .filter(|(i, _)| *i > min_nano)
        .collect();
    sorted.sort_by_key(|(i, _)| *i);

    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(sorted.len());
    for (input, output) in sorted {
        if let Some((last_in, last_out)) = merged.last_mut() {
            if input.saturating_sub(*last_in) <= MERGE_EPS_NANO {
                if output > *last_out {
                    *last_out = output;
                }
                continue;
            }
        }
        merged.push((input, output));
    }

    for w in merged.windows(2) {
        let ((in_a, out_a), (in_b, out_b)) = (w[0], w[1]);
        if in_b > in_a && out_b.saturating_add(DELTA_SLACK_NANO) < out_a {
            return Some(format!(
                "monotonicity violated: input {:.6} -> output {:.6}, input {:.6} -> output {:.6}",
                from_nano(in_a),
                from_nano(out_a),
                from_nano(in_b),
                from_nano(out_b)
            ));
        }
    }

    let mut prev: Option<(u64, u64)> = None;
    for w in merged.windows(2) {
        let ((in_a, out_a), (in_b, out_b)) = (w[0], w[1]);
        let dx = in_b - in_a;
        if dx == 0 || dx < MIN_DX_NANO {
            continue;
        }
        let dy = out_b.saturating_sub(out_a);
        if let Some((prev_dy, prev_dx)) = prev {
            let lhs = (prev_dy.saturating_add(DELTA_SLACK_NANO) as u128) * (dx as u128);
            let rhs = (dy.saturating_sub(DELTA_SLACK_NANO) as u128) * (prev_dx as u128);
            if rhs > lhs {
                return Some(format!(
                    "concavity violated: slope rose from {:.9} to {:.9} between inputs {:.6} and {:.6}",
                    prev_dy as f64 / prev_dx as f64,
                    dy as f64 / dx as f64,
                    from_nano(in_a),
                    from_nano(in_b)
                ));
            }
        }
        prev = Some((dy, dx));
    }
    None
}
