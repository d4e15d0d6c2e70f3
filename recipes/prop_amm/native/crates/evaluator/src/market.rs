//! The fair price (geometric Brownian motion) and the retail flow (Poisson arrivals,
//! log-normal sizes in Y, buy or sell with equal odds), each on its own PCG64 stream.

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Poisson, StandardNormal};
use rand_pcg::Pcg64;

pub struct PriceProcess {
    price: f64,
    drift: f64,
    vol: f64,
    rng: Pcg64,
}

impl PriceProcess {
    pub fn new(initial: f64, mu: f64, sigma: f64, dt: f64, seed: u64) -> Self {
        Self {
            price: initial,
            drift: (mu - 0.5 * sigma * sigma) * dt,
            vol: sigma * dt.sqrt(),
            rng: Pcg64::seed_from_u64(seed),
        }
    }

    /// The next step's fair price.
    #[inline]
    pub fn step(&mut self) -> f64 {
        let z: f64 = StandardNormal.sample(&mut self.rng);
        self.price *= (self.drift + self.vol * z).exp();
        self.price
    }
}

/// A retail order: buy X with `size` Y, or sell X worth `size` Y.
pub struct Order {
    pub is_buy: bool,
    pub size: f64,
}

/// The log-normal of a given mean and log-sigma (the retail sizes, the arbitrageur's starts).
pub fn size_distribution(mean_size: f64, size_sigma: f64) -> LogNormal<f64> {
    let sigma = size_sigma.max(0.01);
    let mu = mean_size.max(0.01).ln() - 0.5 * sigma * sigma;
    LogNormal::new(mu, sigma).unwrap()
}

pub struct RetailFlow {
    buy_prob: f64,
    rng: Pcg64,
    arrivals: Poisson<f64>,
    sizes: LogNormal<f64>,
}

impl RetailFlow {
    pub fn new(rate: f64, mean_size: f64, size_sigma: f64, buy_prob: f64, seed: u64) -> Self {
        Self {
            buy_prob,
            rng: Pcg64::seed_from_u64(seed),
            arrivals: Poisson::new(rate.max(0.01)).unwrap(),
            sizes: size_distribution(mean_size, size_sigma),
        }
    }

    /// This step's orders.
    pub fn orders(&mut self) -> Vec<Order> {
        let n = self.arrivals.sample(&mut self.rng) as usize;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let size = self.sizes.sample(&mut self.rng);
            let is_buy = self.rng.gen::<f64>() < self.buy_prob;
            out.push(Order { is_buy, size });
        }
        out
    }
}
