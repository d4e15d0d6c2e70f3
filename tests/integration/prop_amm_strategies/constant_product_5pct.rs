//! A constant-product AMM that keeps 5 % of every input as its fee: the shape of the public
//! challenge's starter strategy, written against the same APIs (pinocchio, wincode,
//! prop_amm_submission_sdk).
use pinocchio::{account_info::AccountInfo, entrypoint, pubkey::Pubkey, ProgramResult};
use prop_amm_submission_sdk::{set_return_data_bytes, set_return_data_u64};

const NAME: &str = "Five percent constant product";
const MODEL_USED: &str = "None";
const KEEP_NUM: u128 = 950;
const KEEP_DEN: u128 = 1000;

#[derive(wincode::SchemaRead)]
struct Quote {
    side: u8,
    amount_in: u64,
    reserve_x: u64,
    reserve_y: u64,
    _storage: [u8; 1024],
}

#[cfg(not(feature = "no-entrypoint"))]
entrypoint!(process_instruction);

pub fn process_instruction(
    _program_id: &Pubkey,
    _accounts: &[AccountInfo],
    data: &[u8],
) -> ProgramResult {
    match data.first() {
        Some(0) | Some(1) => set_return_data_u64(compute_swap(data)),
        Some(3) => set_return_data_bytes(NAME.as_bytes()),
        Some(4) => set_return_data_bytes(get_model_used().as_bytes()),
        _ => {}
    }
    Ok(())
}

pub fn get_model_used() -> &'static str {
    MODEL_USED
}

pub fn compute_swap(data: &[u8]) -> u64 {
    let quote: Quote = match wincode::deserialize(data) {
        Ok(q) => q,
        Err(_) => return 0,
    };
    let (x, y) = (quote.reserve_x as u128, quote.reserve_y as u128);
    if x == 0 || y == 0 {
        return 0;
    }
    let k = x * y;
    let net = quote.amount_in as u128 * KEEP_NUM / KEEP_DEN;
    match quote.side {
        0 => {
            let y_after = y + net;
            x.saturating_sub((k + y_after - 1) / y_after) as u64
        }
        1 => {
            let x_after = x + net;
            y.saturating_sub((k + x_after - 1) / x_after) as u64
        }
        _ => 0,
    }
}
