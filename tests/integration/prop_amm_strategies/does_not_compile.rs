//! Follows the source rules but is not valid Rust: a usize where a u64 is due.
const NAME: &str = "Type error";
const MODEL_USED: &str = "None";

pub fn get_model_used() -> &'static str {
    MODEL_USED
}

pub fn compute_swap(data: &[u8]) -> u64 {
    data.len()
}
