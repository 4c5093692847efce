//! How agents prove who they are to sqlgate: the configured agents with the
//! secrets each wire's login method needs (`agents`), and the methods
//! (`scram` for PostgreSQL).
pub mod agents;
pub mod scram;

pub use agents::{Agent, Agents};
