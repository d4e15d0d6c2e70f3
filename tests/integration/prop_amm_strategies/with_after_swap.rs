//! Keeps a trade counter in its storage (after_swap) and widens its fee with it: exercises
//! after_swap, storage and set_storage through the stand-ins.
use prop_amm_submission_sdk::set_storage;

const NAME: &str = "Counting fee";
const MODEL_USED: &str = "None";

#[derive(wincode::SchemaRead)]
struct Swap {
    side: u8,
    amount: u64,
    reserve_x: u64,
    reserve_y: u64,
    storage: [u8; 1024],
}

pub fn get_model_used() -> &'static str {
    MODEL_USED
}

pub fn compute_swap(data: &[u8]) -> u64 {
    let Ok(s) = wincode::deserialize::<Swap>(data) else { return 0 };
    let trades = u64::from_le_bytes(s.storage[0..8].try_into().unwrap()).min(200) as u128;
    let keep = 9_970 - trades; // 30 bps, plus 1 bp per trade seen, up to 230 bps
    let (x, y) = (s.reserve_x as u128, s.reserve_y as u128);
    if x == 0 || y == 0 {
        return 0;
    }
    let net = s.amount as u128 * keep / 10_000;
    let k = x * y;
    match s.side {
        0 => x.saturating_sub((k + y + net - 1) / (y + net)) as u64,
        1 => y.saturating_sub((k + x + net - 1) / (x + net)) as u64,
        _ => 0,
    }
}

pub fn after_swap(_data: &[u8], storage: &mut [u8]) {
    let seen = u64::from_le_bytes(storage[0..8].try_into().unwrap()) + 1;
    storage[0..8].copy_from_slice(&seen.to_le_bytes());
    let _ = set_storage(&storage[..8]);
}
