//! One simulation: each step the fair price moves, the arbitrageur trades on the submission
//! then on the normaliser, and each retail order is routed between them. The score is the
//! submission's edge: what it gained against the fair price over every trade it made.

use crate::amm::Amm;
use crate::arbitrage::Arbitrageur;
use crate::config::SimConfig;
use crate::market::{PriceProcess, RetailFlow};
use crate::normalizer;
use crate::router;
use crate::{AfterSwapFn, SwapFn};

/// The submission's edge over simulation `config`.
pub fn run(swap: SwapFn, after: Option<AfterSwapFn>, config: &SimConfig) -> f64 {
    let mut sub = Amm::new(swap, after, config.initial_x, config.initial_y, true);
    let mut norm = Amm::new(
        normalizer::compute_swap,
        Some(normalizer::after_swap),
        config.initial_x * config.norm_liquidity_mult,
        config.initial_y * config.norm_liquidity_mult,
        false,
    );
    norm.set_initial_storage(&config.norm_fee_bps.to_le_bytes());

    let mut price = PriceProcess::new(
        config.initial_price,
        config.gbm_mu,
        config.gbm_sigma,
        config.gbm_dt,
        config.seed,
    );
    let mut retail = RetailFlow::new(
        config.retail_rate,
        config.retail_mean_size,
        config.retail_size_sigma,
        config.retail_buy_prob,
        config.seed.wrapping_add(1),
    );
    let mut arb = Arbitrageur::new(
        config.min_arb_profit,
        config.retail_mean_size,
        config.retail_size_sigma,
        config.seed.wrapping_add(2),
    );

    let mut edge = 0.0_f64;
    for step in 0..config.steps {
        sub.set_step(step as u64);
        norm.set_step(step as u64);
        let fair = price.step();
        if let Some(trade) = arb.run(&mut sub, fair) {
            edge += trade.edge;
        }
        arb.run(&mut norm, fair);
        for order in &retail.orders() {
            for fill in router::route(order, &mut sub, &mut norm, fair) {
                if fill.is_submission {
                    edge += if fill.amm_buys_x {
                        fill.amount_x * fair - fill.amount_y
                    } else {
                        fill.amount_y - fill.amount_x * fair
                    };
                }
            }
        }
    }
    edge
}
