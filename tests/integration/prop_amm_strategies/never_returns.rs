//! A compute_swap that never returns.
const NAME: &str = "Spins forever";
const MODEL_USED: &str = "None";

pub fn get_model_used() -> &'static str {
    MODEL_USED
}

pub fn compute_swap(data: &[u8]) -> u64 {
    let mut spins: u64 = data.len() as u64;
    loop {
        spins = std::hint::black_box(spins.wrapping_add(1));
    }
}
