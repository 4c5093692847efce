//! PostgreSQL wire-protocol pieces for sqlgate, with no sockets and no policy.
//!
//! - [`frame`] cuts a byte stream into messages (tag + length) and decides
//!   which large messages may stream through without being buffered whole.
//! - [`frontend`] reads what a client sends: the startup packet and the few
//!   fields of Query/Parse/Bind/Execute/Describe/Close that the firewall needs,
//!   strictly (bounds-checked, exact bytes, UTF-8 checked where SQL is concerned).
//! - [`backend`] reads the fields sqlgate needs from server messages
//!   (ErrorResponse fields, CommandComplete tags, ReadyForQuery status) and
//!   encodes the messages sqlgate itself sends to clients, using pgwire's codec.
//! - [`sqlstate`] names the SQLSTATE codes sqlgate answers with.
//!
//! Why reading is hand-written: pgwire's decoders panic on truncated bodies
//! (`Buf::get_u8` on an empty buffer) and decode C strings lossily; a firewall
//! must see exactly the bytes it forwards and must never panic on input.
//! Encoding what we originate goes through pgwire, which is exact for our own
//! well-formed values.

pub mod backend;
pub mod frame;
pub mod frontend;
pub mod sqlstate;
