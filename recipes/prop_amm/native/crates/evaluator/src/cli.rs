//! The runner executable's entry point (docs/recipes.md, "prop_amm"). The strategy's build
//! links its functions in and calls [`main`]; the platform runs it once per chunk, in the
//! task sandbox, and reads the JSON it writes to the file given first:
//!
//! - `eval OUT SEED_BASE START COUNT STEPS`: `{"ok": true, "seeds": [..], "edges": [..]}`, the
//!   edge of each simulation `SEED_BASE + START + i`; a strategy that panics or breaks the shape
//!   guard: `{"ok": false, "seed", "error"}` and exit status 3.
//! - `validate OUT` / `concavity OUT`: `{"ok", "checks": [{"check", "passed", "detail"}]}`.
//! - `meta OUT`: `{"ok": true, "name", "model_used"}`.

use crate::checks::{self, Check};
use crate::config::SimConfig;
use crate::sim;
use crate::{AfterSwapFn, SwapFn};
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What the strategy's build hands over.
pub struct Strategy {
    pub swap: SwapFn,
    pub after_swap: Option<AfterSwapFn>,
    pub name: &'static str,
    pub model_used: &'static str,
}

/// The message of a caught panic.
pub fn panic_text(payload: &Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_f64(v: f64) -> String {
    if v.is_finite() {
        format!("{v:?}")
    } else {
        "null".to_string()
    }
}

fn checks_json(checks: &[Check]) -> String {
    let ok = checks.iter().all(|c| c.passed);
    let items: Vec<String> = checks
        .iter()
        .map(|c| {
            format!(
                "{{\"check\":{},\"passed\":{},\"detail\":{}}}",
                json_str(c.name),
                c.passed,
                json_str(&c.detail)
            )
        })
        .collect();
    format!("{{\"ok\":{ok},\"checks\":[{}]}}", items.join(","))
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    args.get(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| usage(&format!("missing or bad {what}")))
}

fn usage(why: &str) -> ! {
    eprintln!("usage: runner eval|validate|concavity|meta OUT [SEED_BASE START COUNT STEPS]: {why}");
    std::process::exit(2)
}

fn eval(strategy: &Strategy, args: &[String]) -> (String, i32) {
    let seed_base: u64 = arg(args, 3, "SEED_BASE");
    let start: u64 = arg(args, 4, "START");
    let count: u64 = arg(args, 5, "COUNT");
    let steps: u32 = arg(args, 6, "STEPS");
    let mut seeds = Vec::with_capacity(count as usize);
    let mut edges = Vec::with_capacity(count as usize);
    for i in 0..count {
        let seed = seed_base.wrapping_add(start).wrapping_add(i);
        let config = SimConfig::for_seed(seed, steps);
        match catch_unwind(AssertUnwindSafe(|| sim::run(strategy.swap, strategy.after_swap, &config))) {
            Ok(edge) => {
                seeds.push(seed.to_string());
                edges.push(json_f64(edge));
            }
            Err(payload) => {
                let text = format!(
                    "{{\"ok\":false,\"seed\":{seed},\"error\":{}}}",
                    json_str(&panic_text(&payload))
                );
                return (text, 3);
            }
        }
    }
    let text = format!(
        "{{\"ok\":true,\"seeds\":[{}],\"edges\":[{}]}}",
        seeds.join(","),
        edges.join(",")
    );
    (text, 0)
}

/// Run the command the arguments name and write its JSON answer.
pub fn main(strategy: Strategy) {
    std::panic::set_hook(Box::new(|_| {}));
    let args: Vec<String> = std::env::args().collect();
    let command = args.get(1).cloned().unwrap_or_default();
    let out = args.get(2).cloned().unwrap_or_else(|| usage("missing OUT"));
    let (text, code) = match command.as_str() {
        "eval" => eval(&strategy, &args),
        "validate" => {
            let checks = checks::validate(strategy.swap, strategy.after_swap);
            (checks_json(&checks), 0)
        }
        "concavity" => (checks_json(&checks::concavity(strategy.swap)), 0),
        "meta" => (
            format!(
                "{{\"ok\":true,\"name\":{},\"model_used\":{}}}",
                json_str(strategy.name),
                json_str(strategy.model_used)
            ),
            0,
        ),
        other => usage(&format!("unknown command {other:?}")),
    };
    if let Err(err) = std::fs::write(&out, text) {
        eprintln!("cannot write {out}: {err}");
        std::process::exit(4);
    }
    std::process::exit(code);
}
