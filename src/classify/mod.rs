//! SQL → classes, tables, fingerprint. (Being written: see types.rs for the contract.)
mod types;
pub use types::*;
mod stub;
pub use stub::*;
