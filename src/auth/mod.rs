//! How agents prove who they are to sqlgate.
pub mod scram;
