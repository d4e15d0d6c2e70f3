//! Monotone but convex: the output grows with the square of the input, so each extra unit in
//! buys more than the one before. The challenge's concavity checks refuse it.
const NAME: &str = "Convex on purpose";
const MODEL_USED: &str = "None";

pub fn get_model_used() -> &'static str {
    MODEL_USED
}

pub fn compute_swap(data: &[u8]) -> u64 {
    if data.len() < 25 {
        return 0;
    }
    let amount = u64::from_le_bytes(data[1..9].try_into().unwrap()) as u128;
    (amount * amount / 100_000_000_000) as u64
}
