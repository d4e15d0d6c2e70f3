//! Native stand-in of the Prop AMM submission SDK (docs/recipes.md, "prop_amm"):
//! `set_return_data_u64`, `set_return_data_bytes`, `set_storage`. In the native path the
//! evaluator hands `after_swap` its storage directly, so `set_storage` only checks the size.

/// Bytes of persistent storage a strategy has.
pub const STORAGE_SIZE: usize = 1024;

/// Why storage could not be set.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum StorageError {
    TooLarge,
}

/// Return a u64 (little-endian) as the program's return data.
#[inline]
pub fn set_return_data_u64(value: u64) {
    set_return_data_bytes(&value.to_le_bytes());
}

/// Return bytes as the program's return data.
#[inline]
pub fn set_return_data_bytes(bytes: &[u8]) {
    pinocchio::program::set_return_data(bytes);
}

/// Persist storage (at most [`STORAGE_SIZE`] bytes).
#[inline]
pub fn set_storage(storage: &[u8]) -> Result<(), StorageError> {
    if storage.len() > STORAGE_SIZE {
        return Err(StorageError::TooLarge);
    }
    Ok(())
}
