//! The competing AMM: constant product with a fee read from its storage's first two bytes
//! (little-endian bps, 0 meaning 30), in integer nano arithmetic rounding against the trader.

/// The normaliser's `compute_swap`.
pub fn compute_swap(data: &[u8]) -> u64 {
    if data.len() < 25 {
        return 0;
    }
    let side = data[0];
    let word = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().unwrap()) as u128;
    let input = word(1);
    let rx = word(9);
    let ry = word(17);
    if rx == 0 || ry == 0 {
        return 0;
    }
    let fee_bps = if data.len() >= 27 {
        match u16::from_le_bytes([data[25], data[26]]) {
            0 => 30u128,
            raw => raw as u128,
        }
    } else {
        30u128
    };
    let k = rx * ry;
    let net = input * (10_000 - fee_bps) / 10_000;
    match side {
        0 => {
            let new_ry = ry + net;
            rx.saturating_sub((k + new_ry - 1) / new_ry) as u64
        }
        1 => {
            let new_rx = rx + net;
            ry.saturating_sub((k + new_rx - 1) / new_rx) as u64
        }
        _ => 0,
    }
}

/// The normaliser keeps no state.
pub fn after_swap(_data: &[u8], _storage: &mut [u8]) {}
