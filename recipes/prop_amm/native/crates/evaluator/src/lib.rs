//! The prop_amm recipe's evaluator (docs/recipes.md, "prop_amm"): the public Prop AMM
//! challenge's simulation reproduced seed for seed — the same algorithms, the same random
//! draws in the same order (rand 0.8.5, rand_distr 0.4.3, rand_pcg 0.3.1) — so a strategy's
//! edge matches what the challenge's native simulator prints.
//!
//! A strategy is linked in as plain functions ([`SwapFn`], [`AfterSwapFn`]); [`cli::main`] is
//! the runner executable's entry point (`eval`, `validate`, `concavity`, `meta`).

pub mod amm;
pub mod arbitrage;
pub mod checks;
pub mod cli;
pub mod config;
pub mod market;
pub mod nano;
pub mod normalizer;
pub mod router;
pub mod shape;
pub mod sim;

/// A strategy's `compute_swap`: instruction bytes (with its storage appended) to output amount.
pub type SwapFn = fn(&[u8]) -> u64;
/// A strategy's `after_swap`: trade bytes and its mutable storage.
pub type AfterSwapFn = fn(&[u8], &mut [u8]);

/// Bytes of storage each AMM carries.
pub const STORAGE_SIZE: usize = 1024;
