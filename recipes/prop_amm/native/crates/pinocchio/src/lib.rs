//! Native stand-in of the `pinocchio` APIs a Prop AMM strategy uses (docs/recipes.md,
//! "prop_amm"): `entrypoint!`, `AccountInfo`, `Pubkey`, `ProgramResult`, `ProgramError`,
//! `program::set_return_data`. The evaluator calls a strategy's `compute_swap` directly, so the
//! entrypoint only type-checks the program's `process_instruction`.

pub mod pubkey {
    /// A 32-byte account address.
    pub type Pubkey = [u8; 32];
}

pub mod account_info {
    /// An account handed to a program; strategies receive none in the native path.
    #[derive(Clone, Debug, Default)]
    pub struct AccountInfo {
        _private: (),
    }

    impl AccountInfo {
        pub fn key(&self) -> &crate::pubkey::Pubkey {
            &[0u8; 32]
        }
        pub fn data_len(&self) -> usize {
            0
        }
    }
}

pub mod program_error {
    /// Why a program failed.
    #[derive(Clone, Debug, Eq, PartialEq)]
    pub enum ProgramError {
        Custom(u32),
        InvalidArgument,
        InvalidInstructionData,
        InvalidAccountData,
        AccountDataTooSmall,
        NotEnoughAccountKeys,
    }
}

pub mod program {
    use std::cell::RefCell;

    thread_local! {
        static RETURN_DATA: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }

    /// Record the program's return data (the last call wins, as on chain).
    pub fn set_return_data(data: &[u8]) {
        RETURN_DATA.with(|cell| {
            let mut cell = cell.borrow_mut();
            cell.clear();
            cell.extend_from_slice(data);
        });
    }

    /// The return data the last `set_return_data` left on this thread.
    pub fn get_return_data() -> Vec<u8> {
        RETURN_DATA.with(|cell| cell.borrow().clone())
    }
}

pub use account_info::AccountInfo;
pub use program_error::ProgramError;
pub use pubkey::Pubkey;

/// What a program's instruction processor answers.
pub type ProgramResult = Result<(), ProgramError>;

/// Declares the program's instruction processor; natively it only checks its signature.
#[macro_export]
macro_rules! entrypoint {
    ($process_instruction:ident) => {
        #[allow(dead_code)]
        const _: fn(
            &$crate::pubkey::Pubkey,
            &[$crate::account_info::AccountInfo],
            &[u8],
        ) -> $crate::ProgramResult = $process_instruction;
    };
}

/// Logs a message (natively: nothing).
#[macro_export]
macro_rules! msg {
    ($($arg:tt)*) => {{
        let _ = format_args!($($arg)*);
    }};
}
