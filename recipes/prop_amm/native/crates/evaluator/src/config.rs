//! One simulation's parameters: the baseline, and the per-seed hyperparameters drawn from a
//! PCG64 seeded with the simulation's seed in the challenge's order (volatility, retail
//! arrival rate, retail mean size, normaliser fee, normaliser liquidity).

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub steps: u32,
    pub initial_price: f64,
    pub initial_x: f64,
    pub initial_y: f64,
    pub gbm_mu: f64,
    pub gbm_sigma: f64,
    pub gbm_dt: f64,
    pub retail_rate: f64,
    pub retail_mean_size: f64,
    pub retail_size_sigma: f64,
    pub retail_buy_prob: f64,
    pub min_arb_profit: f64,
    pub norm_fee_bps: u16,
    pub norm_liquidity_mult: f64,
}

impl SimConfig {
    /// The configuration of simulation `seed` with `steps` steps.
    pub fn for_seed(seed: u64, steps: u32) -> Self {
        let mut rng = Pcg64::seed_from_u64(seed);
        let gbm_sigma = rng.gen_range(0.0001..0.007);
        let retail_rate = rng.gen_range(0.4..1.2);
        let retail_mean_size = rng.gen_range(12.0..28.0);
        let norm_fee_bps: u16 = rng.gen_range(30..=80);
        let norm_liquidity_mult = rng.gen_range(0.4..2.0);
        SimConfig {
            seed,
            steps,
            initial_price: 100.0,
            initial_x: 100.0,
            initial_y: 10_000.0,
            gbm_mu: 0.0,
            gbm_sigma,
            gbm_dt: 1.0,
            retail_rate,
            retail_mean_size,
            retail_size_sigma: 1.2,
            retail_buy_prob: 0.5,
            min_arb_profit: 0.01,
            norm_fee_bps,
            norm_liquidity_mult,
        }
    }
}
