//! The side connection's one need: run a simple query over an upstream
//! session sqlgate opened itself (its own TLS, Unix-socket and SCRAM code,
//! see `proxy::postgres::upstream`) and read the rows as text.
//!
//! Messages are decoded by `postgres-protocol` (rust-postgres' codec), not
//! by hand.

use crate::proxy::stream::Stream;
use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Rows of text values (`None` for NULL).
pub type Rows = Vec<Vec<Option<String>>>;

/// Past this much buffered answer the query fails: the catalog is small,
/// and a server that answers without end must not grow sqlgate's memory.
const MAX_ANSWER: usize = 64 << 20;

pub async fn simple(stream: &mut Stream, sql: &str) -> Result<Rows, String> {
    let mut out = BytesMut::new();
    frontend::query(sql, &mut out).map_err(|e| e.to_string())?;
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut buf = BytesMut::with_capacity(8192);
    let mut rows = Vec::new();
    let mut error = None;
    let mut size = 0usize;
    loop {
        let msg = loop {
            match Message::parse(&mut buf).map_err(|e| e.to_string())? {
                Some(m) => break m,
                None => {
                    let n = stream.read_buf(&mut buf).await.map_err(|e| e.to_string())?;
                    size += n;
                    if n == 0 || size > MAX_ANSWER {
                        return Err("the catalog connection closed or answered too much".into());
                    }
                }
            }
        };
        match msg {
            Message::DataRow(r) => {
                let body = r.buffer();
                let mut row = Vec::new();
                let mut ranges = r.ranges();
                while let Some(range) = fallible(ranges.next())? {
                    row.push(range.map(|x| String::from_utf8_lossy(&body[x]).into_owned()));
                }
                rows.push(row);
            }
            Message::ErrorResponse(e) => {
                let mut fields = e.fields();
                let mut text = String::from("error");
                while let Some(f) = fallible(fields.next())? {
                    if f.type_() == b'M' {
                        text = String::from_utf8_lossy(f.value_bytes()).into_owned();
                    }
                }
                error = Some(text);
            }
            Message::ReadyForQuery(_) => {
                return match error {
                    Some(e) => Err(e),
                    None => Ok(rows),
                }
            }
            _ => {}
        }
    }
}

fn fallible<T>(r: std::io::Result<Option<T>>) -> Result<Option<T>, String> {
    r.map_err(|e| e.to_string())
}
