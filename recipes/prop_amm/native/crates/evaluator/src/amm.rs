//! An AMM as the simulation sees it: float reserves, a strategy called in nano-units with its
//! storage appended, quotes refused (0) when non-positive, non-finite or above the reserve.

use crate::nano::{from_nano, to_nano};
use crate::{AfterSwapFn, SwapFn, STORAGE_SIZE};

const MIN_RESERVE: f64 = 1e-12;
const SWAP_HEADER: usize = 25;
const AFTER_HEADER: usize = 42;

pub struct Amm {
    swap: SwapFn,
    after: Option<AfterSwapFn>,
    pub reserve_x: f64,
    pub reserve_y: f64,
    /// The submission (shape-checked, searched) or the normaliser (closed-form arbitrage).
    pub is_submission: bool,
    storage: Vec<u8>,
    step: u64,
    swap_buf: Vec<u8>,
    after_buf: Vec<u8>,
}

impl Amm {
    pub fn new(
        swap: SwapFn,
        after: Option<AfterSwapFn>,
        reserve_x: f64,
        reserve_y: f64,
        is_submission: bool,
    ) -> Self {
        Self {
            swap,
            after,
            reserve_x,
            reserve_y,
            is_submission,
            storage: vec![0u8; STORAGE_SIZE],
            step: 0,
            swap_buf: vec![0u8; SWAP_HEADER + STORAGE_SIZE],
            after_buf: vec![0u8; AFTER_HEADER + STORAGE_SIZE],
        }
    }

    pub fn set_step(&mut self, step: u64) {
        self.step = step;
    }

    pub fn set_initial_storage(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.storage.len());
        self.storage[..n].copy_from_slice(&bytes[..n]);
    }

    pub fn storage(&self) -> &[u8] {
        &self.storage
    }

    /// The strategy's raw answer for a trade of `amount` nano-units on `side`.
    #[inline]
    pub fn call(&mut self, side: u8, amount: u64, rx: u64, ry: u64) -> u64 {
        let buf = &mut self.swap_buf;
        buf[0] = side;
        buf[1..9].copy_from_slice(&amount.to_le_bytes());
        buf[9..17].copy_from_slice(&rx.to_le_bytes());
        buf[17..25].copy_from_slice(&ry.to_le_bytes());
        buf[SWAP_HEADER..].copy_from_slice(&self.storage);
        (self.swap)(buf)
    }

    /// Calls the strategy's `after_swap` with the trade and post-trade reserves.
    pub fn call_after_swap(&mut self, side: u8, input: u64, output: u64, rx: u64, ry: u64) {
        let Some(after) = self.after else { return };
        let buf = &mut self.after_buf;
        buf[0] = 2;
        buf[1] = side;
        buf[2..10].copy_from_slice(&input.to_le_bytes());
        buf[10..18].copy_from_slice(&output.to_le_bytes());
        buf[18..26].copy_from_slice(&rx.to_le_bytes());
        buf[26..34].copy_from_slice(&ry.to_le_bytes());
        buf[34..42].copy_from_slice(&self.step.to_le_bytes());
        buf[AFTER_HEADER..].copy_from_slice(&self.storage);
        after(buf, &mut self.storage[..STORAGE_SIZE]);
    }

    #[inline]
    fn reserves_ok(&self) -> bool {
        self.reserve_x > MIN_RESERVE
            && self.reserve_y > MIN_RESERVE
            && self.reserve_x.is_finite()
            && self.reserve_y.is_finite()
    }

    #[inline]
    fn quote(&mut self, side: u8, input: f64, cap: f64) -> f64 {
        if input <= 0.0 || !input.is_finite() || !self.reserves_ok() {
            return 0.0;
        }
        let (rx, ry) = (to_nano(self.reserve_x), to_nano(self.reserve_y));
        let quoted = from_nano(self.call(side, to_nano(input), rx, ry));
        if !quoted.is_finite() || quoted <= 0.0 || quoted > cap {
            0.0
        } else {
            quoted
        }
    }

    /// X out for `input_y` Y in (0 when refused).
    #[inline]
    pub fn quote_buy_x(&mut self, input_y: f64) -> f64 {
        let cap = self.reserve_x;
        self.quote(0, input_y, cap)
    }

    /// Y out for `input_x` X in (0 when refused).
    #[inline]
    pub fn quote_sell_x(&mut self, input_x: f64) -> f64 {
        let cap = self.reserve_y;
        self.quote(1, input_x, cap)
    }

    /// Trade `input_y` Y for X; the X out, or 0 when nothing traded.
    pub fn execute_buy_x(&mut self, input_y: f64) -> f64 {
        let output_x = self.quote_buy_x(input_y);
        if input_y <= 0.0 || output_x <= 0.0 || !input_y.is_finite() || !output_x.is_finite() {
            return 0.0;
        }
        if output_x >= self.reserve_x {
            return 0.0;
        }
        let new_rx = self.reserve_x - output_x;
        let new_ry = self.reserve_y + input_y;
        if new_rx <= MIN_RESERVE || new_ry <= MIN_RESERVE || !new_rx.is_finite() || !new_ry.is_finite()
        {
            return 0.0;
        }
        self.reserve_x = new_rx;
        self.reserve_y = new_ry;
        let (rx, ry) = (to_nano(new_rx), to_nano(new_ry));
        self.call_after_swap(0, to_nano(input_y), to_nano(output_x), rx, ry);
        output_x
    }

    /// Trade `input_x` X for Y; the Y out, or 0 when nothing traded.
    pub fn execute_sell_x(&mut self, input_x: f64) -> f64 {
        let output_y = self.quote_sell_x(input_x);
        if input_x <= 0.0 || output_y <= 0.0 || !input_x.is_finite() || !output_y.is_finite() {
            return 0.0;
        }
        if output_y >= self.reserve_y {
            return 0.0;
        }
        let new_rx = self.reserve_x + input_x;
        let new_ry = self.reserve_y - output_y;
        if new_rx <= MIN_RESERVE || new_ry <= MIN_RESERVE || !new_rx.is_finite() || !new_ry.is_finite()
        {
            return 0.0;
        }
        self.reserve_x = new_rx;
        self.reserve_y = new_ry;
        let (rx, ry) = (to_nano(new_rx), to_nano(new_ry));
        self.call_after_swap(1, to_nano(input_x), to_nano(output_y), rx, ry);
        output_y
    }
}
